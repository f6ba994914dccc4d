"""Pieces every training stage shares: datasets of encoded samples, optimizer, LR schedule, metric logs.

Stages stay short scripts by calling these; none of them holds algorithm math.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from processors.collate import collate_sft
from processors.processor import MultimodalProcessor
from vlrl.config import OptimConfig
from vlrl.types import Sample


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SFTDataset(Dataset):
    """Samples encoded lazily (images decoded per batch, in the loader): prompt + ``sample.response``."""

    def __init__(self, samples: Sequence[Sample], processor: MultimodalProcessor) -> None:
        missing = [s.id for s in samples if s.response is None]
        if missing:
            raise ValueError(f"{len(missing)} sample(s) have no 'response' to train on, e.g. {missing[:3]}")
        self.samples, self.processor = list(samples), processor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        return self.processor.encode(s, s.response)


def infinite_batches(dataset: Dataset, batch_size: int, pad_id: int, seed: int,
                     num_workers: int = 0) -> Iterator:
    """Endless reshuffled epochs of SFT batches (epoch e is shuffled with seed + e)."""
    epoch = 0
    while True:
        g = torch.Generator().manual_seed(seed + epoch)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g, drop_last=len(dataset) > batch_size,
                            collate_fn=lambda items: collate_sft(items, pad_id), num_workers=num_workers)
        yield from loader
        epoch += 1


def build_optimizer(params: Sequence[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW; parameters with fewer than 2 dims (norms, biases) get no weight decay."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` at ``step``: linear warm-up, then cosine / linear decay to min_lr_ratio."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape


def build_scheduler(opt: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig):
    if cfg.schedule not in ("cosine", "linear", "constant"):
        raise ValueError(f"optim.schedule '{cfg.schedule}' is not one of cosine, linear, constant")
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg))


class MetricsLog:
    """Appends one JSON object per call to ``path`` (flushed, so a crash loses nothing logged)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a")
        self._t0 = time.time()

    def log(self, step: int, **metrics: Any) -> None:
        row = {"step": step, "time": round(time.time() - self._t0, 3), **metrics}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
