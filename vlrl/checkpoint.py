"""Training checkpoints: ``<output_dir>/checkpoints/step-N/`` holds a loadable model (safetensors +
processor + config) plus ``trainer.pt`` (optimizer, scheduler, RNG: tensors and plain values only, read
back with ``weights_only=True``) and ``trainer_state.json`` (step, phase, data position). A checkpoint is
written to ``step-N.tmp`` and renamed when complete, so an interrupted save is never picked up; a
checkpoint damaged later is detected on resume and the previous intact one is used."""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from vlrl.models.builder import WEIGHTS_NAME, save_pretrained

STATE = "trainer_state.json"
TENSORS = "trainer.pt"


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    found = [p for p in root.glob("step-*") if re.fullmatch(r"step-\d+", p.name) and (p / STATE).exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def checkpoint_damage(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from (a truncated, empty or missing file, an unreadable state), or
    None when it is intact. Reads the weights' header (safetensors checks that the data covers it), the
    optimizer archive's CRCs and the state JSON."""
    from safetensors import safe_open

    try:
        state = json.loads((ckpt / STATE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            return f"{STATE} has no integer 'step'"
    except (OSError, ValueError) as e:
        return f"{STATE} is unreadable ({e})"
    weights = ckpt / WEIGHTS_NAME
    try:
        with safe_open(str(weights), "pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError: any failure means damaged
        return f"{WEIGHTS_NAME} is unreadable ({type(e).__name__}: {e})"
    try:
        with zipfile.ZipFile(ckpt / TENSORS) as z:
            bad = z.testzip()
        if bad is not None:
            return f"{TENSORS} has a corrupt member {bad}"
    except (OSError, zipfile.BadZipFile) as e:
        return f"{TENSORS} is unreadable ({e})"
    return None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest intact checkpoint. A damaged newer one (e.g. a disk that filled up mid-save, a file
    truncated by a copy) is reported and skipped, so the run resumes from the one before it."""
    for ckpt in reversed(checkpoint_dirs(output_dir)):
        why = checkpoint_damage(ckpt)
        if why is None:
            return ckpt
        print(f"[checkpoint] {ckpt} is damaged and skipped: {why}", file=sys.stderr)
    return None


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


# Keys that may change when a run continues: how long it runs, how often it saves, logs and evaluates,
# where its outputs go. Any other change (optimizer, loss, data, rollout, model, seed) would make the
# resumed run a different experiment than its config.yaml says.
RESUMABLE = {"iterations", "phases.steps", "max_steps_per_run", "time_limit_minutes", "save_every",
             "keep_checkpoints", "eval_sources", "eval_every", "eval_at_start", "eval_max_new_tokens",
             "eval_samples", "log_every", "trackers", "resume", "resume_allow_changes", "export_llava",
             "save_adapter", "num_workers", "output_dir",
             "sharding"}  # sharded or not, the update is the same (tests/integration/test_distributed.py)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {a.b: value}; a list of dicts (phases) -> {phases.key: [values per item]}."""
    if isinstance(d, dict):
        return {k: v for key, val in d.items() for k, v in _flat(val, f"{prefix}{key}.").items()}
    if isinstance(d, list) and d and all(isinstance(x, dict) for x in d):
        keys = dict.fromkeys(k for x in d for k in x)
        return {f"{prefix}{k}": [x.get(k) for x in d] for k in keys}
    return {prefix[:-1]: d}


def config_changes(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{key: (checkpoint's value, new value)} for every key a resume must not change silently. A key the
    checkpoint's config does not have (added to vlrl after it was written) is not a change."""
    a, b = _flat(saved), _flat(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in RESUMABLE and k in a}


def check_resume_config(ckpt: Path, config: dict, allow: bool, output_dir: str | Path) -> None:
    """Compare the run's config with the one its checkpoint was written under. A changed key is an error
    naming it, unless ``allow`` (``resume_allow_changes=true``): then the changes are applied, printed and
    recorded in ``output_dir/resumes.jsonl``. Checkpoints from before configs were stored pass unchecked."""
    state = json.loads((ckpt / STATE).read_text())
    saved = state.get("config")
    config = json.loads(json.dumps(config, default=str))  # as the checkpoint stored it (tuples as lists)
    changes = config_changes(saved, config) if saved is not None else {}
    if not changes:
        return
    listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
    if not allow:
        raise ValueError(f"resume from {ckpt}: the config differs from the checkpoint's in {listed}. Run with "
                         f"the checkpoint's values, pass resume_allow_changes=true to continue with the new "
                         f"ones (recorded in resumes.jsonl), or give a new output_dir")
    print(f"[resume] applying config changes: {listed}")
    with (Path(output_dir) / "resumes.jsonl").open("a") as f:
        f.write(json.dumps({"checkpoint": str(ckpt), "step": state["step"],
                            "changes": {k: list(v) for k, v in changes.items()}}, default=str) + "\n")
