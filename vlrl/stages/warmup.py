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
from typing import Any, List

from vlrl.config import save_config
from vlrl.data import load_data
from vlrl.eval.heldout import evaluate_held_out
from vlrl.rewards.config import RewardConfig, verifier_config
from vlrl.trainer import SFTConfig, SFTTrainer, build_or_load
from vlrl.training import SFTDataset, seed_everything


@dataclass
class WarmupConfig(SFTConfig):
    eval_sources: List[Any] = field(default_factory=list)  # held-out samples evaluated at the end
    eval_max_new_tokens: int = 256
    reward: RewardConfig = field(default_factory=verifier_config)  # scores the held-out evaluation
    output_dir: str = "runs/tiny/warmup"


def main(cfg: WarmupConfig) -> Path:
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    model, processor = build_or_load(cfg)
    dataset = SFTDataset(load_data(cfg.data.sources, cfg.data.on_bad_row, processor), processor)
    trainer = SFTTrainer(cfg, model, processor, dataset, stage="warmup")
    model = trainer.fit()
    if trainer.save_final("Warm-up") and cfg.eval_sources:
        evaluate_held_out(model, processor, cfg.eval_sources, cfg.eval_max_new_tokens, out / "eval", "Warm-up",
                          cfg.reward)
    return out
