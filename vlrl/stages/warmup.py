"""Supervised fine-tuning (the long-CoT warm-up stage; also the demo's training step).

Cross-entropy on response tokens only, over mixed text-only and image-text batches.

    vlrl warmup --config configs/tiny/warmup.yaml [key=value ...]

Setup -> build (model from ``init_from`` or from ``model``; data) -> loop (AdamW, warm-up + cosine LR,
gradient clipping, accumulation) -> save (``output_dir``: safetensors model + processor + config.yaml +
metrics.jsonl) -> show a few held-out answers. Runs unchanged under ``accelerate launch``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from accelerate import Accelerator
from tqdm import tqdm

from vlrl.config import DataConfig, ModelConfig, OptimConfig, save_config
from vlrl.data import LoadReport, load_samples
from vlrl.inference import Predictor
from vlrl.models import build_vlm, load_pretrained, save_pretrained
from vlrl.rewards.extract import extract_answer
from vlrl.training import (MetricsLog, SFTDataset, build_optimizer, build_scheduler, infinite_batches,
                           seed_everything)


@dataclass
class WarmupConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    init_from: Optional[str] = None  # a saved model directory; when null the model is built from `model`
    data: DataConfig = field(default_factory=DataConfig)
    eval_sources: List[str] = field(default_factory=list)  # held-out samples to answer at the end
    show_examples: int = 4
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 300
    batch_size: int = 32
    log_every: int = 10
    seed: int = 0
    output_dir: str = "runs/tiny/warmup"


def load_data(sources: List[str], on_bad_row: str) -> list:
    report = LoadReport()
    samples = [s for src in sources for s in load_samples(src, on_bad_row, report)]
    print(f"[data] {report.summary()}")
    if not samples:
        raise ValueError(f"no samples loaded from {sources}")
    return samples


def main(cfg: WarmupConfig) -> Path:
    accel = Accelerator(gradient_accumulation_steps=cfg.optim.grad_accum)
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")

    # build
    if cfg.init_from:
        model, processor = load_pretrained(cfg.init_from)
    else:
        model, processor = build_vlm(cfg.model, system_prompt=cfg.data.system_prompt)
    sizes = model.num_parameters()
    print(f"[model] parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in sizes.items()))
    dataset = SFTDataset(load_data(cfg.data.sources, cfg.data.on_bad_row), processor)
    opt = build_optimizer(list(model.parameters()), cfg.optim)
    sched = build_scheduler(opt, cfg.steps, cfg.optim)
    model, opt, sched = accel.prepare(model, opt, sched)
    batches = infinite_batches(dataset, cfg.batch_size, processor.pad_token_id, cfg.seed)

    # loop
    log = MetricsLog(out / "metrics.jsonl") if accel.is_main_process else None
    model.train()
    bar = tqdm(range(cfg.steps), desc="warmup", disable=not accel.is_main_process, mininterval=1.0)
    for step in bar:
        for _ in range(cfg.optim.grad_accum):
            batch = next(batches).to(accel.device)
            with accel.accumulate(model):
                loss = model(batch).loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"step {step}: loss is {loss.item()} on samples {batch.sample_ids[:4]}")
                accel.backward(loss)
                grad_norm = accel.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if log and (step % cfg.log_every == 0 or step == cfg.steps - 1):
            log.log(step, loss=loss.item(), grad_norm=float(grad_norm), lr=sched.get_last_lr()[0])

    # save
    model = accel.unwrap_model(model)
    if accel.is_main_process:
        save_pretrained(model, processor, out)
        print(f"[save] model -> {out}")
        if cfg.eval_sources and cfg.show_examples:
            show_examples(Predictor(model, processor), load_data(cfg.eval_sources, "skip")[: cfg.show_examples])
    return out


def show_examples(predictor: Predictor, samples: list) -> None:
    """Print a few questions with the model's answers next to the reference."""
    answers = predictor.answer_samples(samples, max_new_tokens=32)
    right = 0
    for s, a in zip(samples, answers):
        ok = extract_answer(a) == s.answer
        right += ok
        where = f" [image: {s.images[0]}]" if s.images and isinstance(s.images[0], str) else ""
        print(f"  Q: {s.question}{where}\n  model: {a.strip()!r}   reference: {s.answer}   {'OK' if ok else 'x'}")
    print(f"[examples] {right}/{len(samples)} correct")
