"""Pieces every training stage shares: resumable data order, optimizer, LR schedule, metric logs, RNG.

Stages stay short scripts by calling these; none of them holds algorithm math.
"""

from __future__ import annotations

import collections
import json
import math
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from processors.image import ImageLoadError
from processors.processor import MultimodalProcessor
from vlrl.config import OptimConfig
from vlrl.types import Sample


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SFTDataset(Dataset):
    """Samples encoded lazily (images decoded per batch, in the loader): prompt + ``sample.response``.

    A sample whose image turns out to be missing or corrupt is reported (file and sample id, on stderr)
    and dropped from its batch (``__getitem__`` returns None), not allowed to kill a long run."""

    def __init__(self, samples: Sequence[Sample], processor: MultimodalProcessor) -> None:
        missing = [s.id for s in samples if s.response is None]
        if missing:
            raise ValueError(f"{len(missing)} sample(s) have no 'response' to train on, e.g. {missing[:3]}")
        self.samples, self.processor = list(samples), processor

    def __len__(self) -> int:
        return len(self.samples)

    def lengths(self) -> list[int]:
        """Approximate tokens per sample (question + response + image tokens; no image is decoded), for
        grouping batches by length."""
        tok, per_image = self.processor.tokenize, self.processor.num_image_tokens
        return [len(tok(s.question or "")) + len(tok(s.response or "")) + per_image * len(s.images)
                for s in self.samples]

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            return self.processor.encode(s, s.response)
        except ImageLoadError as e:
            print(f"[data] skipping: {e}", file=sys.stderr)
            return None


class ResumableBatchSampler:
    """Endless reshuffled epochs of global batches, with a position that can be saved and restored.

    Epoch e is the permutation ``randperm(n)`` seeded with ``seed + e``; a global batch is the next
    ``global_batch`` indices of it (the incomplete tail is dropped), and each process takes its slice
    ``[rank::world]``. Because the DataLoader may prefetch, the position after each yielded batch is queued
    in ``positions`` and the consumer pops one per batch it actually uses.

    With ``lengths`` (token count per sample), batches are grouped by length: the permutation is cut
    into windows of ``group_window`` global batches, each window is sorted by length and cut into
    batches, and the batches of the epoch are shuffled. A batch then pads to nearly its own length
    instead of the longest of 32 random samples (HF Trainer's ``group_by_length``); still deterministic
    per (seed, epoch), so resuming works unchanged.
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 lengths: Sequence[int] | None = None, group_window: int = 16) -> None:
        if n < 1:
            raise ValueError("no samples to train on")
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"lengths has {len(lengths)} entries for {n} samples")
        self.n, self.B, self.seed, self.rank, self.world = n, min(global_batch, n), seed, rank, world
        self.lengths, self.window = lengths, max(1, group_window)
        self.epoch, self.pos = 0, 0
        self.positions: collections.deque = collections.deque()

    def _perm(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=gen).tolist()
        if self.lengths is None:
            return perm
        perm = perm[: self.n - self.n % self.B]  # the incomplete tail is dropped anyway
        size = self.B * self.window
        batches = []
        for c in range(0, len(perm), size):
            window = sorted(perm[c : c + size], key=lambda i: -self.lengths[i])
            batches += [window[j : j + self.B] for j in range(0, len(window), self.B)]
        return [i for b in torch.randperm(len(batches), generator=gen).tolist() for i in batches[b]]

    def __iter__(self) -> Iterator[list[int]]:
        perm = self._perm()
        while True:
            if self.pos + self.B > self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                perm = self._perm()
            batch = perm[self.pos : self.pos + self.B]
            self.pos += self.B
            self.positions.append({"epoch": self.epoch, "pos": self.pos})
            yield batch[self.rank :: self.world]


class BatchStream:
    """Batches from a dataset in the order of a ResumableBatchSampler; ``state_dict`` is the position
    after the last batch handed out (prefetched batches do not count)."""

    def __init__(self, dataset: Dataset, collate: Callable, sampler: ResumableBatchSampler,
                 num_workers: int = 0) -> None:
        self.dataset, self.collate, self.sampler, self.num_workers = dataset, collate, sampler, num_workers
        self._it: Iterator | None = None
        self.consumed = {"epoch": 0, "pos": 0}

    def __next__(self):
        if self._it is None:
            loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.num_workers,
                                collate_fn=self._collate_loaded)
            self._it = iter(loader)
        batch = next(self._it)
        self.consumed = self.sampler.positions.popleft()
        return batch

    def _collate_loaded(self, items: list):
        """Collate the rows that loaded (a row whose image broke after the load-time check is None)."""
        kept = [x for x in items if x is not None]
        if not kept:
            raise ValueError(f"every one of the {len(items)} rows of a batch failed to load its images (the "
                             f"'[data] skipping' lines name them): the image files changed after loading")
        return self.collate(kept)

    def state_dict(self) -> dict:
        return dict(self.consumed)

    def load_state_dict(self, state: dict) -> None:
        if self._it is not None:
            raise RuntimeError("load the data position before the first batch")
        self.sampler.epoch, self.sampler.pos = int(state["epoch"]), int(state["pos"])
        self.consumed = dict(state)


def build_optimizer(params: Sequence[torch.nn.Parameter], cfg: OptimConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW; parameters with fewer than 2 dims (norms, biases) get no weight decay."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: every parameter is frozen")
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr if lr is not None else cfg.lr, betas=tuple(cfg.betas),
                             fused=fusable(params) or None)


def fusable(params: Sequence[torch.Tensor]) -> bool:
    """Whether AdamW can update ``params`` in one fused kernel: plain floating tensors on one CPU or CUDA
    device. On the CPU torch otherwise loops over the tensors in Python, several small ops each, which
    costs a tiny model's update more than its matmuls; sharded (DTensor) parameters keep the default."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        DTensor = ()  # type: ignore[assignment,misc]
    return (len({p.device for p in params}) == 1 and params[0].device.type in ("cpu", "cuda")
            and all(p.is_floating_point() and not isinstance(p, DTensor) for p in params))


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the base LR at ``step``: linear warm-up, then cosine / linear decay to min_lr_ratio."""
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


class OptimizerSchedule:
    """LR of an optimizer that may be rebuilt during a run (RL resets Adam every iteration):
    ``base lr x warm-up x decay``. The warm-up ramps over the first ``cfg.warmup_steps`` steps of *this*
    optimizer (a fresh Adam's first steps are sign-like, every weight moving by the full lr); the decay
    (``cfg.schedule``, after ``lr_factor``) runs over the whole run's ``total`` optimizer steps, of which
    ``done`` were taken before this call, ``local`` of them by ``opt`` itself (a resumed optimizer)."""

    def __init__(self, opt: torch.optim.Optimizer, cfg: OptimConfig, total: int, done: int = 0,
                 local: int = 0) -> None:
        if cfg.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"optim.schedule '{cfg.schedule}' is not one of cosine, linear, constant")
        self.opt, self.cfg, self.total, self.done, self.local = opt, cfg, max(1, total), done, local
        for g in opt.param_groups:  # a loaded optimizer's lr is already scheduled: keep the base apart
            g.setdefault("initial_lr", g["lr"])
        self._apply()

    def factor(self) -> float:
        warm = min(1.0, (self.local + 1) / self.cfg.warmup_steps) if self.cfg.warmup_steps > 0 else 1.0
        decay = lr_factor(min(self.done, self.total), self.total, replace(self.cfg, warmup_steps=0))
        return warm * decay

    def step(self) -> None:
        self.done, self.local = self.done + 1, self.local + 1
        self._apply()

    def _apply(self) -> None:
        f = self.factor()
        for group in self.opt.param_groups:
            group["lr"] = group["initial_lr"] * f


def rng_state() -> dict[str, Any]:
    """Python / numpy / torch RNG states as tensors and JSON-able values (no pickled objects)."""
    np_state = np.random.get_state()
    return {"python": json.dumps(random.getstate()), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0))
    torch.set_rng_state(state["torch"])


class MetricsLog:
    """Appends one JSON object per call to ``path`` (flushed, so a crash loses nothing logged).

    ``keep_through``: the step the run continues from. Rows already in the file with a later step were
    logged by an interrupted run after its last checkpoint; they are dropped so that the resumed run logs
    each step once. The default (-1) starts a fresh file: a new run in an old directory."""

    def __init__(self, path: str | Path, keep_through: int = -1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept, elapsed = [], 0.0
        if keep_through >= 0 and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by the kill: the step it belonged to is redone
                    continue
                if row.get("step", 0) <= keep_through:
                    kept.append(line)
                    elapsed = max(elapsed, float(row.get("time", 0.0)))
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, self.path)
        self._f = self.path.open("a")
        self._t0 = time.time() - elapsed  # "time" goes on from the kept rows' last one

    def log(self, step: int, **metrics: Any) -> None:
        row = {"step": step, "time": round(time.time() - self._t0, 3), **metrics}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
