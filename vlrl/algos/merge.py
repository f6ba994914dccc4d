"""Model merging (k1.5 §2.4): a weighted average of checkpoints of one architecture.

The paper merges a long-CoT and a short-CoT model "by simply averaging their weights"; ``weights``
default to equal shares. ``modules`` restricts the average to some top-level modules (encoder /
projector / llm); every other tensor is taken from the first model.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Mapping, Sequence

import torch

from vlrl.models.trainable import MODULES


def merge_state_dicts(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None,
                      modules: Sequence[str] | None = None, names: Sequence[str] | None = None
                      ) -> dict[str, torch.Tensor]:
    """sum_i w_i * state_i (w normalised to sum to 1) for every tensor under ``modules`` (all if None).

    Raises:
        ValueError: fewer than two models, bad weights or modules, or the architectures differ (names the
            first mismatching tensor and the models)."""
    names = list(names or [f"model {i}" for i in range(len(states))])
    if len(states) < 2:
        raise ValueError("merge: give at least two models")
    w = [1.0] * len(states) if weights is None else [float(x) for x in weights]
    if len(w) != len(states) or sum(w) <= 0 or any(x < 0 for x in w):
        raise ValueError(f"merge: {len(w)} weight(s) {w} for {len(states)} models; weights must be >= 0, one per "
                         f"model, with a positive sum")
    w = [x / sum(w) for x in w]
    bad = [m for m in modules or [] if m not in MODULES]
    if bad:
        raise ValueError(f"merge: unknown module(s) {bad}; choose from {list(MODULES)}")
    base = states[0]
    for name, st in zip(names[1:], states[1:]):
        if set(st) != set(base):
            diff = sorted(set(st) ^ set(base))[:3]
            raise ValueError(f"merge: {names[0]} and {name} have different architectures (tensors {diff} ...)")
        for k, v in base.items():
            if st[k].shape != v.shape:
                raise ValueError(f"merge: {names[0]} and {name} have different architectures: '{k}' is "
                                 f"{tuple(v.shape)} vs {tuple(st[k].shape)}")
    out = {}
    for k, v in base.items():
        if (modules is None or k.split(".")[0] in modules) and v.is_floating_point():
            out[k] = sum(wi * st[k].float() for wi, st in zip(w, states)).to(v.dtype)
        else:
            out[k] = v.clone()
    return out


def merge_models(paths: List[str], out: str | Path, weights: List[float] | None = None,
                 modules: List[str] | None = None) -> Path:
    """Average saved models into ``out`` (a normal checkpoint with the first model's processor)."""
    from safetensors.torch import load_file

    from vlrl.models.builder import WEIGHTS_NAME, load_pretrained, save_pretrained

    model, processor = load_pretrained(paths[0])
    states = [load_file(str(Path(p) / WEIGHTS_NAME)) for p in paths]
    merged = merge_state_dicts(states, weights, modules or None, names=paths)
    model.load_state_dict(merged, strict=False)
    save_pretrained(model, processor, out)
    print(f"[merge] {' + '.join(paths)} -> {out}")
    return Path(out)
