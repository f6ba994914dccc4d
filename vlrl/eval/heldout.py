"""Held-out pass@1 of a model during or after a stage: the evaluation every training stage ends with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

from vlrl.config import to_dict
from vlrl.data import load_data
from vlrl.distributed import launcher_precision
from vlrl.eval.metrics import PromptRecord, full_report
from vlrl.eval.report import write_report
from vlrl.eval.runner import evaluate_samples
from vlrl.models.generation import SamplingParams
from vlrl.rewards.config import RewardConfig, verifier_config


def evaluate_held_out(model, processor, sources: List[Any], max_new_tokens: int, out: Path, title: str,
                      reward: RewardConfig | None = None, n: int = 1, temperature: float = 0.0) -> dict:
    """Pass@1 on held-out ``sources`` through the evaluation harness, scored by ``reward`` (the stage's
    own reward; default: the math verifier), greedy by default, else the mean over ``n`` samples at
    ``temperature`` (k1.5's "Pass@1 averaged over 8 runs"); the report goes to ``out``."""
    samples = load_data(sources, processor=processor)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, num_samples=n)
    reward_fn = (reward or verifier_config()).build()
    # greedy: 64 prompts per generation batch (identical answers to 32, tested); sampled: 32, since the
    # samples depend on how the generator's draws fall over the batch
    records = evaluate_samples(model, processor, samples, params, reward_fn, batch_size=64 if temperature == 0 else 32)
    report = full_report(records)
    write_report(report, records, out, title)
    how = "greedy" if temperature == 0 else f"{n} samples at T {temperature:g}"
    print(f"[eval] held-out pass@1 ({how}) {report['overall']['pass@1']:.3f} -> {out}/eval.md")
    for name, m in report["by_modality"].items():
        print(f"[eval]   {name:14s} {m['pass@1']:.3f} ({m['prompts']} prompts, mean {m['mean_tokens']:.0f} tokens)")
    return report


def stage_evaluation(model_dir: str | Path, sources: List[Any], max_new_tokens: int,
                     reward: RewardConfig | None = None, precision: str | None = None) -> Optional[Path]:
    """The held-out evaluation the stage that saved ``model_dir`` made of that final model, if it used
    these ``sources``, ``max_new_tokens`` and ``reward`` (default: the math verifier), greedy (so it is
    the evaluation a later stage would make of the same weights): ``eval/`` of a warm-up,
    ``eval/iter-<last>/`` of an RL run. None when there is none. ``precision`` ("fp32" / "bf16"): also
    require the stage's precision, resolved under this process's launcher, to be that one."""
    import yaml

    d = Path(model_dir)
    try:
        saved = yaml.safe_load((d / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    if saved.get("eval_sources") != list(sources) or saved.get("eval_max_new_tokens") != max_new_tokens:
        return None
    if "reward" in saved and saved["reward"] != to_dict(reward or verifier_config()):
        return None  # scored by another reward: another pass@1
    if precision is not None and launcher_precision(saved.get("precision", "auto"), "eval", True) != precision:
        return None
    if "iterations" in saved:  # an RL run: its last iteration was evaluated only if eval_every divides it
        every, last = saved.get("eval_every") or 0, saved["iterations"]
        found = d / "eval" / f"iter-{last}" if every and last % every == 0 else None
    else:
        found = d / "eval"
    return found if found is not None and (found / "eval.json").is_file() and (found / "records.jsonl").is_file() else None


def copy_evaluation(found: Path, out: Path, title: str) -> dict:
    """Write the evaluation in ``found`` (``stage_evaluation``) to ``out`` under ``title``; returns its report."""
    report = json.loads((found / "eval.json").read_text())
    records = [PromptRecord(**json.loads(x)) for x in (found / "records.jsonl").read_text().splitlines()]
    write_report(report, records, out, title)
    return report
