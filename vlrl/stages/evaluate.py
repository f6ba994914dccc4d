"""Evaluation stage: n responses per held-out prompt, verified, summarised per modality / domain / difficulty.

    vlrl eval --model runs/tiny/warmup --data synth:shapes?n=200&seed=999 --n 8 --temperature 1.0
    vlrl eval --config configs/tiny/eval.yaml model=runs/x/warmup

Writes ``output_dir``/eval.json, eval.md, eval.png and records.jsonl. Pass@1 is averaged over the n
responses; pass@k is the unbiased estimator; maj@k is majority voting. Held-out means held out: ids that
also appear in ``exclude_ids_from`` (the training sources) are an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from vlrl.config import save_config
from vlrl.data import load_data, load_samples
from vlrl.distributed import launcher_precision
from vlrl.eval import evaluate_samples, full_report, write_report
from vlrl.models import SamplingParams, load_pretrained
from vlrl.rewards.config import RewardConfig


@dataclass
class EvalConfig:
    model: str = ""  # a saved model directory
    sources: List[Any] = field(default_factory=list)
    exclude_ids_from: List[Any] = field(default_factory=list)  # training sources: overlap by id is an error
    n: int = 1  # responses per prompt
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    ks: List[int] = field(default_factory=lambda: [1, 4, 8])
    batch_size: int = 32
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 (autocast, fp32 weights); auto: the launcher's --mixed_precision
    system_prompt: Optional[str] = None
    reward: RewardConfig = field(default_factory=RewardConfig)
    output_dir: str = "runs/eval"
    title: str = "Evaluation"


def check_held_out(samples: list, exclude_sources: List[Any]) -> None:
    if not exclude_sources:
        return
    train_ids = {s.id for src in exclude_sources for s in load_samples(src)}
    overlap = sorted({s.id for s in samples} & train_ids)
    if overlap:
        raise ValueError(f"{len(overlap)} evaluation sample id(s) also appear in the training data "
                         f"({', '.join(exclude_sources)}), e.g. {overlap[:5]}; evaluate on a held-out split")


def main(cfg: EvalConfig) -> dict:
    if not cfg.model or not cfg.sources:
        raise ValueError("eval: give a model directory (model=...) and at least one data source (sources=[...])")
    if cfg.n > 1 and cfg.temperature == 0:
        raise ValueError("eval: n > 1 responses per prompt need temperature > 0 (greedy answers are identical)")
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    model, processor = load_pretrained(cfg.model, precision=launcher_precision(cfg.precision, "eval"))
    samples = load_data(cfg.sources, "skip", processor)
    check_held_out(samples, cfg.exclude_ids_from)
    reward_fn = cfg.reward.build()
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                            num_samples=cfg.n)
    records = evaluate_samples(model, processor, samples, params, reward_fn, cfg.batch_size, cfg.seed,
                               cfg.system_prompt)
    result = full_report(records, cfg.ks)
    write_report(result, records, out, cfg.title)
    o = result["overall"]
    print(f"[eval] {o['prompts']} prompts: pass@1 {o['pass@1']:.3f}, mean tokens {o['mean_tokens']:.1f}, "
          f"verifier errors {o['verifier_errors']} -> {out}/eval.md")
    for m, v in result["by_modality"].items():
        print(f"[eval]   {m:14s} pass@1 {v['pass@1']:.3f} ({v['prompts']} prompts)")
    return result
