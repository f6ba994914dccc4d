"""Which top-level modules of a VisionLanguageModel learn: the stages' ``train: [...]`` lists."""

from __future__ import annotations

from typing import Sequence

import torch

MODULES = ("encoder", "projector", "llm")


def set_trainable(model: torch.nn.Module, modules: Sequence[str], key: str = "phases[].train") -> None:
    """Only ``modules`` (of MODULES) learn; ``key`` names the config field in the error for an unknown one.
    ``model.encoder.freeze`` in the model config wins over ``modules``."""
    unknown = set(modules) - set(MODULES)
    if unknown:
        raise ValueError(f"{key}: unknown module(s) {sorted(unknown)}; choose from {MODULES}")
    frozen = {"encoder"} if model.config.encoder.freeze else set()
    for name in MODULES:
        getattr(model, name).requires_grad_(name in modules and name not in frozen)
