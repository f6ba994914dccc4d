"""LoRA through peft: adapters injected into the VisionLanguageModel's own modules, merged on save.

``add_lora`` wraps the linear layers named ``target_modules`` inside the listed top-level modules with
peft's LoRA layers in place (parameter names gain ``.base_layer`` / ``.lora_A`` / ``.lora_B``; the model
stays a VisionLanguageModel, so every stage, loss and the LLaVA export see the same object). Only the
adapters of those modules train (``set_trainable``). Training checkpoints keep the adapters (exact
resume); ``merged_state_dict`` gives the full weights W + (alpha / r) B A under the plain names, which
``save_pretrained`` and ``export`` write by default.
"""

from __future__ import annotations

import dataclasses

import torch

from vlrl.config import LoRAConfig
from vlrl.models.trainable import MODULES

ADAPTER = "default"


def add_lora(model, cfg: LoRAConfig) -> None:
    """Inject LoRA adapters per ``cfg`` and record it in ``model.config.lora`` (a no-op for a model that
    already has these adapters; other adapters are an error)."""
    from peft import LoraConfig, inject_adapter_in_model

    if has_lora(model):  # a training checkpoint loaded with its adapters: they must be the ones asked for
        if model.config.lora != cfg:
            raise ValueError(f"lora: the model already has adapters {model.config.lora}, not {cfg}")
        return
    unknown = set(cfg.modules) - set(MODULES)
    if unknown:
        raise ValueError(f"lora.modules: unknown module(s) {sorted(unknown)}; choose from {MODULES}")
    peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules))
    for name in cfg.modules:
        try:
            inject_adapter_in_model(peft_cfg, getattr(model, name), adapter_name=ADAPTER)
        except ValueError as e:
            raise ValueError(f"lora.target_modules {list(cfg.target_modules)} in model.{name}: {e}") from e
    model.config = dataclasses.replace(model.config, lora=cfg)


def has_lora(model) -> bool:
    from peft.tuners.lora import LoraLayer

    return any(isinstance(m, LoraLayer) for m in model.modules())


def is_lora_param(name: str) -> bool:
    return ".lora_" in name


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights with every adapter merged in, under the names of a model without LoRA."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if is_lora_param(k):
            continue
        if ".base_layer." not in k:
            out[k] = v
            continue
        owner, leaf = k.split(".base_layer.")
        if leaf == "weight":
            layer = model.get_submodule(owner)
            v = (v + layer.get_delta_weight(ADAPTER).to(v.dtype)).detach()
        out[f"{owner}.{leaf}"] = v
    return out
