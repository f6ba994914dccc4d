"""Which top-level modules of a VisionLanguageModel learn: the stages' ``train: [...]`` lists."""

from __future__ import annotations

from typing import Sequence

import torch

MODULES = ("encoder", "projector", "llm")


def set_trainable(model: torch.nn.Module, modules: Sequence[str], key: str = "phases[].train") -> None:
    """Only ``modules`` (of MODULES) learn, and of a module with LoRA adapters only its adapters; ``key``
    names the config field in the error for an unknown one. ``model.encoder.freeze`` in the model config
    wins over ``modules``."""
    unknown = set(modules) - set(MODULES)
    if unknown:
        raise ValueError(f"{key}: unknown module(s) {sorted(unknown)}; choose from {MODULES}")
    frozen = {"encoder"} if model.config.encoder.freeze else set()
    for name in MODULES:
        part, learns = getattr(model, name), name in modules and name not in frozen
        adapters = [p for n, p in part.named_parameters() if ".lora_" in n]
        part.requires_grad_(learns and not adapters)  # under LoRA only the adapters of a module learn
        for p in adapters:
            p.requires_grad_(learns)
