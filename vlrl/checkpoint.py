"""Training checkpoints: ``<output_dir>/checkpoints/step-N/`` holds a loadable model (safetensors +
processor + config) plus ``trainer.pt`` (optimizer, scheduler, RNG: tensors and plain values only, read
back with ``weights_only=True``) and ``trainer_state.json`` (step, phase, data position). A checkpoint is
written to ``step-N.tmp`` and renamed when complete, so an interrupted save is never picked up."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from vlrl.models.builder import save_pretrained

STATE = "trainer_state.json"
TENSORS = "trainer.pt"


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    found = [p for p in root.glob("step-*") if re.fullmatch(r"step-\d+", p.name) and (p / STATE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    dirs = checkpoint_dirs(output_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(output_dir: str | Path, model, processor, tensors: dict[str, Any], state: dict[str, Any],
                    keep: int = 2) -> Path:
    root = Path(output_dir) / "checkpoints"
    final = root / f"step-{state['step']}"
    tmp = root / f"step-{state['step']}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, processor, tmp, merge_lora=False)  # resume needs the adapters as they are
    torch.save(tensors, tmp / TENSORS)
    (tmp / STATE).write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint_state(ckpt: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer_state.json, trainer.pt tensors) of a checkpoint directory."""
    state = json.loads((ckpt / STATE).read_text())
    tensors = torch.load(ckpt / TENSORS, map_location="cpu", weights_only=True)
    return state, tensors
