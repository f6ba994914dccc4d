"""The supervised training loop shared by the alignment and warm-up stages.

Training runs in phases; each phase says which modules learn (``train: [projector]`` then
``[encoder, projector, llm]``, Kimi k1.5's "vision tower first, LM frozen" recipe) and gets a fresh AdamW
and LR schedule. Checkpoints every ``save_every`` steps hold the model, optimizer, scheduler, RNG and the
data position; with ``resume: true`` a run continues from the latest one and reproduces the
uninterrupted run. Runs unchanged under ``accelerate launch`` (each process takes its slice of every
global batch; the loss is the token mean over the whole global batch, so N processes make the update one
process makes on the same global batch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from accelerate.utils import is_tensorboard_available
from tqdm import tqdm

from processors.collate import collate_sft
from vlrl.checkpoint import check_resume_config, latest_checkpoint, load_checkpoint_state, save_checkpoint
from vlrl.config import DataConfig, ModelConfig, OptimConfig, to_dict
from vlrl.distributed import accelerator, all_sum, is_main, launcher_precision
from vlrl.guards import require_finite
from vlrl.eval.curves import plot_curves
from vlrl.models.builder import WEIGHTS_NAME, save_pretrained
from vlrl.models.trainable import MODULES, set_trainable
from vlrl.training import (BatchStream, MetricsLog, ResumableBatchSampler, SFTDataset, build_optimizer,
                           build_scheduler, rng_state, set_rng_state)



@dataclass
class PhaseConfig:
    steps: int = 100
    train: List[str] = field(default_factory=lambda: list(MODULES))  # modules that learn in this phase
    lr: Optional[float] = None  # overrides optim.lr for this phase


@dataclass
class SFTConfig:
    """Fields shared by the supervised stages (align, warmup)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    init_from: Optional[str] = None  # a saved model directory; when null the model is built from `model`
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    phases: List[PhaseConfig] = field(default_factory=lambda: [PhaseConfig()])
    batch_size: int = 32  # global batch (all processes, one accumulation step)
    num_workers: int = 0  # data-loader worker processes (images are decoded there)
    # batches of similar length: less padding, but every batch is then of one length (and so mostly of one
    # task), which can hurt learning (docs/results.md has the tiny warm-up's numbers): off by default
    group_by_length: bool = False
    # each batch is sorted by length and run as this many micro-batches, each padded to its own longest
    # row: the same gradient as the whole batch (losses weighted by token share), with less padding
    length_split: int = 1
    log_every: int = 10
    save_every: int = 0  # checkpoint every N steps (0: only the final model)
    keep_checkpoints: int = 2
    resume: bool = True  # continue from the latest checkpoint in output_dir
    # a resume under changed settings (optim.lr, data, ...) is an error naming them; true applies them
    # and records them in output_dir/resumes.jsonl
    resume_allow_changes: bool = False
    max_steps_per_run: Optional[int] = None  # stop (after a checkpoint) after this many steps; resume later
    # end the run after this many minutes of training, saved as finished (the LR schedule is cut short
    # where it stands): baselines at the wall time of another run (scripts/bench_learning.py)
    time_limit_minutes: Optional[float] = None
    trackers: List[str] = field(default_factory=lambda: ["tensorboard"])
    # auto | fp32 | bf16: bf16 = every forward under bf16 autocast with fp32 master weights and optimizer
    # state; auto follows the launcher's --mixed_precision (which accelerate also applies: its FSDP
    # mixed-precision policy, fp16 with loss scaling)
    precision: str = "auto"
    export_llava: bool = False  # also write the final model as a transformers LLaVA in output_dir/hf
    save_adapter: bool = False  # with model.lora: also the adapter alone (peft, LLaVA layout) in output_dir/adapter
    seed: int = 0
    output_dir: str = "runs/tiny/sft"


def check_sizes(cfg: SFTConfig) -> None:
    """Sizes that would make a supervised run do nothing, or fail later with an unclear error."""
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.optim.grad_accum < 1:
        raise ValueError(f"optim.grad_accum must be at least 1, got {cfg.optim.grad_accum}")
    if not cfg.phases:
        raise ValueError("phases is empty: give at least one phase, e.g. phases=[{steps: 100}]")
    for i, phase in enumerate(cfg.phases):
        if phase.steps < 1:
            raise ValueError(f"phases[{i}].steps must be at least 1, got {phase.steps}")


def build_or_load(cfg: SFTConfig):
    """(model, processor): loaded from ``cfg.init_from`` (a previous stage's output) or built from
    ``cfg.model``; prints the parameter counts."""
    from vlrl.models import build_vlm, load_pretrained
    from vlrl.models.builder import enable_gradient_checkpointing
    from vlrl.models.lora import add_lora

    if cfg.init_from:
        model, processor = load_pretrained(cfg.init_from)
        if cfg.model.gradient_checkpointing:  # model.* training options apply to a loaded model too
            enable_gradient_checkpointing(model)
        if cfg.model.lora is not None:
            add_lora(model, cfg.model.lora)
    else:
        model, processor = build_vlm(cfg.model, system_prompt=cfg.data.system_prompt)
    sizes = model.num_parameters()
    print("[model] parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in sizes.items()))
    return model, processor


def _trackers(cfg: SFTConfig) -> list[str]:
    out = []
    for t in cfg.trackers:
        if t == "tensorboard" and not is_tensorboard_available():
            print("[train] tensorboard is not installed (pip install 'vlrl[tensorboard]'); logging to metrics.jsonl only")
            continue
        out.append(t)
    return out


class SFTTrainer:
    """Owns the accelerate setup, the phases, checkpoints and logs of one supervised run."""

    def __init__(self, cfg: SFTConfig, model, processor, dataset: SFTDataset, stage: str) -> None:
        self.cfg, self.model, self.processor, self.stage = cfg, model, processor, stage
        self.out = Path(cfg.output_dir)
        # bf16 is the model's own autocast (its evaluations generate in it too), so it needs no accelerate
        # state (a process's first Accelerator fixes that state for every later stage of a pipeline);
        # accelerate still applies the launcher's --mixed_precision (its FSDP policy, fp16's loss scaling)
        precision = launcher_precision(cfg.precision, stage, allow_fp16=True)
        model.precision = "bf16" if precision == "bf16" else "fp32"
        self.accel = accelerator(gradient_accumulation_steps=cfg.optim.grad_accum,
                                 log_with=_trackers(cfg) or None, project_dir=str(self.out))
        check_sizes(cfg)
        if cfg.length_split < 1:
            raise ValueError(f"length_split={cfg.length_split}: give 1 (no split) or more micro-batches per batch")
        # never more parts than a process has rows (a smaller batch_size override keeps working)
        self.split = min(cfg.length_split, max(1, cfg.batch_size // self.accel.num_processes))
        self.accel.gradient_accumulation_steps = cfg.optim.grad_accum * self.split  # sync once per batch, after all its parts
        sampler = ResumableBatchSampler(len(dataset), cfg.batch_size, cfg.seed, self.accel.process_index,
                                        self.accel.num_processes, dataset.lengths() if cfg.group_by_length else None)
        self.stream = BatchStream(dataset, lambda items: collate_sft(items, processor.pad_token_id), sampler,
                                  cfg.num_workers)
        self.step, self.resumed = 0, None
        self.deadline = None if cfg.time_limit_minutes is None else time.time() + 60 * cfg.time_limit_minutes
        self.timed_out = False
        self.log: MetricsLog | None = None  # opened by fit(), once the resume step is known

    def _maybe_resume(self) -> dict | None:
        ckpt = latest_checkpoint(self.out) if self.cfg.resume else None
        if ckpt is None:
            return None
        from safetensors.torch import load_model

        check_resume_config(ckpt, to_dict(self.cfg), self.cfg.resume_allow_changes, self.out)
        state, tensors = load_checkpoint_state(ckpt)
        load_model(self.model, str(ckpt / WEIGHTS_NAME), strict=True, device=str(self.accel.device))
        self.stream.load_state_dict(state["data"])
        set_rng_state(tensors["rng"])
        self.step, self.resumed = int(state["step"]), ckpt
        print(f"[train] resuming from {ckpt} (step {self.step})")
        return tensors

    def _checkpoint(self, phase: int, opt, sched) -> None:
        self.accel.wait_for_everyone()
        if is_main():
            tensors = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state()}
            state = {"step": self.step, "phase": phase, "data": self.stream.state_dict(), "config": to_dict(self.cfg)}
            save_checkpoint(self.out, self.accel.unwrap_model(self.model), self.processor, tensors, state,
                            self.cfg.keep_checkpoints)

    def fit(self) -> torch.nn.Module:
        """Run the remaining phases; return the unwrapped model."""
        tensors = self._maybe_resume()
        if is_main():  # a resumed run drops the rows an interrupted run logged after its checkpoint
            self.log = MetricsLog(self.out / "metrics.jsonl", keep_through=self.step if self.resumed else -1)
        if is_main() and _trackers(self.cfg):
            self.accel.init_trackers(self.stage, config=_flat(to_dict(self.cfg)))
        stop_at = self.step + self.cfg.max_steps_per_run if self.cfg.max_steps_per_run else None
        start = 0
        for i, phase in enumerate(self.cfg.phases):
            end = start + phase.steps
            if self.step < end and (stop_at is None or self.step < stop_at) and not self.timed_out:
                self._run_phase(i, phase, start, end, tensors, stop_at)
                tensors = None  # optimizer state only belongs to the phase it was saved in
            start = end
        if is_main():
            # not accel.end_training(): it also destroys the process group, which the other processes
            # (and the stage's own later collectives) still use; vlrl tears it down at exit
            for tracker in self.accel.trackers:
                tracker.finish()
            self.log.close()
        return self.accel.unwrap_model(self.model)

    def save_final(self, title: str, curves: tuple = ("loss", "lr", "grad_norm", "tokens_per_s")) -> bool:
        """On the main process of a finished run: save the model to ``output_dir`` and plot its curves.
        Returns whether this process saved (a run stopped by ``max_steps_per_run`` saves only checkpoints;
        one that reached ``time_limit_minutes`` is finished)."""
        if not (is_main() and (self.timed_out or self.step >= sum(p.steps for p in self.cfg.phases))):
            return False
        model = self.accel.unwrap_model(self.model)
        save_pretrained(model, self.processor, self.out)
        from vlrl.models.llava import save_llava_copy

        if self.cfg.export_llava:
            save_llava_copy(model, self.processor, self.out / "hf")
        if self.cfg.save_adapter:
            save_llava_copy(model, self.processor, self.out / "adapter", adapter_base=self.cfg.init_from or "")
        plot_curves(self.out / "metrics.jsonl", curves, self.out / "curves.png", title)
        print(f"[save] model -> {self.out} (curves: {self.out / 'curves.png'})")
        return True

    def _run_phase(self, index: int, phase: PhaseConfig, start: int, end: int, tensors: dict | None,
                   stop_at: int | None) -> None:
        cfg = self.cfg
        set_trainable(self.model, phase.train)
        opt = build_optimizer(list(self.model.parameters()), cfg.optim, phase.lr)
        sched = build_scheduler(opt, phase.steps, cfg.optim)
        if tensors is not None and self.step > start:
            opt.load_state_dict(tensors["optimizer"])
            sched.load_state_dict(tensors["scheduler"])
        model, opt = self.accel.prepare(self.model, opt)
        model.train()
        bar = tqdm(range(self.step, end), desc=f"{self.stage} phase {index + 1}/{len(cfg.phases)} "
                   f"[{'+'.join(phase.train)}]", disable=not is_main(), mininterval=1.0)
        t0, tokens = time.time(), 0
        for _ in bar:
            loss, grad_norm, n_tok = self._train_step(model, opt, sched)
            self.step += 1
            tokens += n_tok
            # ~ the global mean (exact with one process); the bar redraws at most once a second
            bar.set_postfix(loss=f"{loss * self.accel.num_processes:.3f}", refresh=False)
            self.timed_out = self._past_deadline()
            if self.step % cfg.log_every == 0 or self.step == end or self.timed_out:
                # every process logs at the same steps, so the sum of the shares is a safe collective
                loss = all_sum([loss])[0]
                metrics = {"loss": loss, "grad_norm": grad_norm, "lr": sched.get_last_lr()[0], "phase": index,
                           "tokens_per_s": tokens / max(1e-9, time.time() - t0)}
                self.accel.log(metrics, step=self.step)
                if self.log:
                    self.log.log(self.step, **metrics)
            last = self.step == end or self.step == stop_at or self.timed_out
            if (cfg.save_every and self.step % cfg.save_every == 0) or (last and cfg.save_every):
                self._checkpoint(index, opt, sched)
            if self.step == stop_at or self.timed_out:
                if self.timed_out:
                    print(f"[train] time limit of {cfg.time_limit_minutes:g} min reached at step {self.step}")
                break
        bar.close()
        self.model = self.accel.unwrap_model(model)

    def _past_deadline(self) -> bool:
        """Whether ``time_limit_minutes`` has passed; any process's clock counts for all (collective when set)."""
        if self.deadline is None:
            return False
        return all_sum([float(time.time() > self.deadline)])[0] > 0

    def _train_step(self, model, opt, sched) -> tuple[float, float, int]:
        """One optimizer step on a global batch (this process's slices of ``grad_accum`` batches, each run as
        ``length_split`` micro-batches of similar length).

        The loss is the mean over every response token of the global batch, whatever the number of
        processes: micro-batch b's token-mean loss is weighted by n_b / N (N = response tokens of the
        global batch, summed over processes), times world x grad_accum x length_split to undo DDP's and accelerate's
        averaging. A mean of per-process means would weight a token of a short-response slice more."""
        batches = [next(self.stream).to(self.accel.device) for _ in range(self.cfg.optim.grad_accum)]
        if self.split > 1:  # accelerate counts grad_accum x split micro-batches per step
            batches = [part for b in batches for part in b.split_by_length(self.split)]
        counts = [int(b.response_mask.sum()) for b in batches]
        n_global = max(1.0, all_sum([float(sum(counts))])[0])
        undo = self.accel.num_processes * self.accel.gradient_accumulation_steps
        total, grad_norm = 0.0, 0.0
        for batch, n_b in zip(batches, counts):
            with self.accel.accumulate(model):
                loss = model(batch).loss
                value = loss.item()  # one device sync per micro-batch: the check, the message and the log
                where = f"{self.stage} step {self.step + 1}"
                require_finite("loss", value, f"{where} (samples {', '.join(map(str, batch.sample_ids[:4]))})")
                self.accel.backward(loss * (n_b * undo / n_global))
                if self.accel.sync_gradients:
                    grad_norm = float(self.accel.clip_grad_norm_(model.parameters(), self.cfg.optim.grad_clip))
                    require_finite("gradient norm", grad_norm, f"{where} (finite loss {value:.4g})")
                opt.step()  # the prepared optimizer only steps when gradients sync
                if self.accel.sync_gradients:
                    sched.step()
                opt.zero_grad(set_to_none=True)
            total += value * n_b / n_global  # this process's share of the global token mean
        return total, grad_norm, sum(counts)


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested config -> flat {a/b: scalar} for trackers (lists become strings)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "/"))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return {k: ("null" if v is None else v) for k, v in out.items()}
