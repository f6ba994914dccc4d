"""Long-CoT warm-up SFT: teach the model to reason in long chains of thought before RL (k1.5 §8).

Cross-entropy on response tokens only, over mixed text-only and image-text batches.

    vlrl warmup --config configs/tiny/warmup.yaml [key=value ...]
    accelerate launch -m vlrl.cli warmup --config configs/examples/qwen2.5-0.5b-siglip/warmup.yaml

Setup -> build (model from ``init_from``, e.g. the align stage's output, or from ``model``; data) ->
loop (SFTTrainer: phases, AdamW, warm-up + cosine LR, clipping, accumulation, checkpoints, resume) ->
save (``output_dir``: model.safetensors + processor + config.yaml + metrics.jsonl) -> evaluate on
``eval_sources`` with the evaluation harness (``output_dir/eval/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List

from vlrl.config import save_config
from vlrl.eval import evaluate_samples, full_report, write_report
from vlrl.models import SamplingParams
from vlrl.rewards import REWARDS
from vlrl.trainer import SFTConfig, SFTTrainer, build_or_load, load_data
from vlrl.training import SFTDataset, seed_everything


@dataclass
class WarmupConfig(SFTConfig):
    eval_sources: List[str] = field(default_factory=list)  # held-out samples evaluated at the end
    eval_max_new_tokens: int = 256
    output_dir: str = "runs/tiny/warmup"


def final_eval(model, processor, sources: List[str], max_new_tokens: int, out: Path, title: str,
               n: int = 1, temperature: float = 0.0) -> dict:
    """Pass@1 on held-out sources through the evaluation harness, greedy by default, else the mean over
    ``n`` samples at ``temperature`` (k1.5's "Pass@1 averaged over 8 runs"); report in ``out``."""
    samples = load_data(sources)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, num_samples=n)
    # greedy: 64 prompts per generation batch, ~15% faster than 32 on the tiny model with identical answers;
    # sampled: 32, as measured (the samples depend on how the generator's draws fall over the batch)
    records = evaluate_samples(model, processor, samples, params, REWARDS.build("math", symbolic=False),
                               batch_size=64 if temperature == 0 else 32)
    report = full_report(records)
    write_report(report, records, out, title)
    how = "greedy" if temperature == 0 else f"{n} samples at T {temperature:g}"
    print(f"[eval] held-out pass@1 ({how}) {report['overall']['pass@1']:.3f} -> {out}/eval.md")
    for name, m in report["by_modality"].items():
        print(f"[eval]   {name:14s} {m['pass@1']:.3f} ({m['prompts']} prompts, mean {m['mean_tokens']:.0f} tokens)")
    return report


def main(cfg: WarmupConfig) -> Path:
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    model, processor = build_or_load(cfg)
    dataset = SFTDataset(load_data(cfg.data.sources, cfg.data.on_bad_row), processor)
    trainer = SFTTrainer(cfg, model, processor, dataset, stage="warmup")
    model = trainer.fit()
    if trainer.save_final("Warm-up") and cfg.eval_sources:
        final_eval(model, processor, cfg.eval_sources, cfg.eval_max_new_tokens, out / "eval", "Warm-up")
    return out
