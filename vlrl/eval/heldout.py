"""Held-out pass@1 of a model during or after a stage: the evaluation every training stage ends with."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

from vlrl.data import load_data
from vlrl.eval.metrics import full_report
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
