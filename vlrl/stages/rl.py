"""RL stage: Kimi k1.5 online policy mirror descent (reference §2.3, §12).

    vlrl rl --config configs/tiny/rl.yaml [key=value ...]

Each iteration i: the current policy pi_{theta_i} is the reference (no model copy: its log-probs come
from the same forward path before the first update, so the log-ratio is exactly 0 at the first step);
the optimizer is reset (``reset_optimizer``); prompts are drawn (uniform / curriculum / prioritized by
1 - success rate); k responses per prompt are rolled out, with partial rollouts under a per-iteration
token budget and a replay buffer; rewards = verified correctness + weighted k1.5 length reward (after
``length_penalty.warmup_iterations``); then ``steps_per_iteration`` gradient steps on the LOSSES loss
(``kimi`` by default; ``grpo`` and ``rloo`` for comparison). Every iteration logs reward, accuracy per
modality, lengths, entropy, log-ratio, grad norm, zero-variance groups, buffer size, tokens/s and the
time split; held-out evaluation every ``eval_every`` iterations; checkpoints resume exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

from vlrl.algos import LOSSES
from vlrl.algos.sampling import CurriculumStage, SuccessTracker, sample_prompts
from vlrl.checkpoint import latest_checkpoint, load_checkpoint_state, save_checkpoint
from vlrl.config import OptimConfig, save_config
from vlrl.eval.curves import plot_curves
from vlrl.models import load_pretrained, save_pretrained
from vlrl.rewards import REWARDS
from vlrl.rewards.combine import score_trajectories
from vlrl.rewards.length import length_penalty_weight
from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout
from vlrl.rollout.scoring import scoring_batch
from vlrl.stages.evaluate import RewardConfig
from vlrl.stages.warmup import final_eval
from vlrl.trainer import load_data
from vlrl.training import MetricsLog, build_optimizer, rng_state, seed_everything, set_rng_state


CURVES = ("reward", "accuracy", "eval/overall", "eval/image", "eval/text", "eval/text_rendered", "length_mean",
          "entropy", "log_ratio_abs_max", "grad_norm", "zero_variance_groups", "buffer")


@dataclass
class LossConfig:
    """``name`` picks the LOSSES entry; ``kwargs`` holds hyperparameters per loss name, so switching
    ``loss.name`` on the command line picks up that loss's own settings."""

    name: str = "kimi"
    kwargs: Dict[str, Dict[str, Any]] = field(default_factory=lambda: {"kimi": {"tau": 0.1}})


@dataclass
class LengthPenaltyConfig:
    weight: float = 0.0
    warmup_iterations: int = 0


@dataclass
class SamplingConfig:
    strategy: str = "uniform"  # uniform | curriculum | prioritized | curriculum+prioritized
    floor: float = 0.05
    curriculum: List[CurriculumStage] = field(default_factory=list)
    skip_equal_groups: bool = False  # drop prompts whose k rewards are all equal from the update


@dataclass
class RLConfig:
    init_from: str = "runs/tiny/warmup"
    sources: List[str] = field(default_factory=list)  # RL prompts (with reference answers)
    eval_sources: List[str] = field(default_factory=list)
    eval_every: int = 10
    eval_max_new_tokens: int = 256
    iterations: int = 30
    prompts_per_iteration: int = 8
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(kwargs={"symbolic": False}))
    length_penalty: LengthPenaltyConfig = field(default_factory=LengthPenaltyConfig)
    repeat_penalty: float = 0.0
    mask_old_segments: bool = True
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, schedule="constant"))
    steps_per_iteration: int = 2
    minibatch_size: int = 64  # responses per optimizer step
    micro_batch_size: int = 16  # responses per forward/backward (memory); gradients accumulate to the minibatch
    reset_optimizer: bool = True
    save_every: int = 10
    resume: bool = True
    seed: int = 0
    output_dir: str = "runs/tiny/rl"


def train_on(model, batch, scored, cfg: RLConfig, opt) -> dict:
    """Reference log-probs first (same forward path, before any update), then ``steps_per_iteration``
    passes of optimizer steps over minibatches; each minibatch is run in micro-batches (gradients
    accumulated) to bound memory. Every loss is a mean over responses, so micro losses are weighted by
    their share of the minibatch."""
    B, mb, micro = len(batch), cfg.minibatch_size, min(cfg.micro_batch_size, cfg.minibatch_size)
    with torch.no_grad():  # (B, T-1): pi_{theta_i}
        ref = torch.cat([model.response_logprobs(_rows(batch, slice(s, s + micro)))[0] for s in range(0, B, micro)])
    mask = batch.response_mask[:, 1:]
    loss_fn, hyper = LOSSES.get(cfg.loss.name), cfg.loss.kwargs.get(cfg.loss.name, {})
    stats: dict = {}
    for _ in range(cfg.steps_per_iteration):
        for start in range(0, B, mb):
            stop = min(start + mb, B)
            opt.zero_grad(set_to_none=True)
            metrics, loss_sum, ent_sum = {}, 0.0, 0.0
            for m0 in range(start, stop, micro):
                sl = slice(m0, min(m0 + micro, stop))
                logp, ent = model.response_logprobs(_rows(batch, sl), with_entropy=True)
                out = loss_fn(logp, ref[sl], mask[sl], scored.rewards[sl], scored.group[sl], **hyper)
                share = (sl.stop - sl.start) / (stop - start)
                (out.loss * share).backward()
                loss_sum += out.loss.item() * share
                ent_sum += float((ent.detach() * mask[sl]).sum())
                metrics = out.metrics
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            opt.step()
            stats = {**metrics, "loss": loss_sum, "grad_norm": float(grad_norm),
                     "entropy": ent_sum / float(mask[start:stop].sum().clamp(min=1))}
    return stats


def _rows(batch, sl):
    """Rows ``sl`` of a scoring batch, with their images."""
    counts = batch.image_counts
    first, last = sum(counts[: sl.start]), sum(counts[: sl.stop])
    pv = batch.pixel_values[first:last] if batch.pixel_values is not None and last > first else None
    return replace(batch, input_ids=batch.input_ids[sl], attention_mask=batch.attention_mask[sl], pixel_values=pv,
                   image_counts=counts[sl], response_mask=batch.response_mask[sl], sample_ids=batch.sample_ids[sl],
                   prompt_lens=batch.prompt_lens[sl])


def keep_informative(trajs, scored):
    """Drop the prompts whose rewards are all equal (zero advantage); return kept trajectories, scores
    and the fraction of groups dropped."""
    g = scored.group
    var = torch.tensor([bool((scored.rewards[g == x] != scored.rewards[g == x][0]).any()) for x in g])
    n_groups = len(torch.unique(g))
    dropped = 1 - len(torch.unique(g[var])) / max(1, n_groups)
    idx = var.nonzero().squeeze(-1).tolist()
    sub = replace(scored, rewards=scored.rewards[idx], correct=scored.correct[idx], lengths=scored.lengths[idx],
                  group=scored.group[idx])
    return [trajs[i] for i in idx], sub, dropped


def iteration_metrics(trajs, scored, zero_var: float, buffer, times: dict) -> dict:
    lens = scored.lengths.numpy()
    m = {"reward": float(scored.rewards.mean()), "accuracy": float(scored.correct.float().mean()),
         "length_mean": float(lens.mean()), "length_p95": float(np.percentile(lens, 95)),
         "zero_variance_groups": zero_var, "buffer": len(buffer), "expired": buffer.expired,
         "trajectories": len(trajs), "verifier_errors": len(scored.errors),
         **{f"time_{k}": round(v, 3) for k, v in times.items()},
         "tokens_per_s": float(lens.sum()) / max(1e-9, sum(times.values()))}
    for mod in sorted({t.sample.modality for t in trajs}):
        idx = [i for i, t in enumerate(trajs) if t.sample.modality == mod]
        m[f"accuracy/{mod}"] = float(scored.correct[idx].float().mean())
        m[f"length/{mod}"] = float(scored.lengths[idx].mean())
    return m


class RLState:
    """Everything a resumed run needs besides the weights: iteration, success rates, replay buffer, RNG."""

    def __init__(self, cfg: RLConfig, samples: list) -> None:
        self.iteration = 0
        self.tracker = SuccessTracker([s.id for s in samples],
                                      {s.id: s.meta["pass_rate"] for s in samples if "pass_rate" in s.meta})
        self.buffer = ReplayBuffer(cfg.rollout.max_age)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def save(self, out: Path, model, processor, keep: int = 2) -> None:
        tensors = {"rng": rng_state(), "generator": self.generator.get_state(), **self.tracker.state_dict()}
        state = {"step": self.iteration, "buffer": self.buffer.state_dict()}
        save_checkpoint(out, model, processor, tensors, state, keep)

    def load(self, ckpt: Path, model, samples_by_id: dict) -> None:
        from safetensors.torch import load_model

        state, tensors = load_checkpoint_state(ckpt)
        load_model(model, str(ckpt / "model.safetensors"), strict=True)
        self.iteration = int(state["step"])
        self.buffer.load_state_dict(state["buffer"], samples_by_id)
        self.tracker.load_state_dict(tensors)
        self.generator.set_state(tensors["generator"])
        set_rng_state(tensors["rng"])


def run_iteration(model, processor, samples, state: RLState, cfg: RLConfig, reward_fn, opt) -> tuple[dict, Any]:
    it, times = state.iteration, {}
    t = time.time()
    idx = sample_prompts(cfg.prompts_per_iteration, [s.difficulty for s in samples], state.tracker.rates, it,
                         cfg.sampling.strategy, cfg.sampling.curriculum, cfg.sampling.floor, state.generator)
    trajs = rollout(model, processor, [samples[i] for i in idx], state.buffer, it, cfg.rollout, state.generator)
    times["rollout"], t = time.time() - t, time.time()
    if not trajs:
        return {"trajectories": 0, "buffer": len(state.buffer)}, opt
    weight = length_penalty_weight(it, cfg.length_penalty.warmup_iterations, cfg.length_penalty.weight)
    scored = score_trajectories([processor.decode(x.tokens) for x in trajs], [x.sample for x in trajs],
                                [len(x.tokens) for x in trajs], [x.finish for x in trajs], reward_fn, weight,
                                cfg.repeat_penalty)
    for sid in dict.fromkeys(x.sample.id for x in trajs):
        state.tracker.update(sid, float(scored.correct[[x.sample.id == sid for x in trajs]].float().mean()))
    train_trajs, train_scored, zero_var = keep_informative(trajs, scored)
    if not cfg.sampling.skip_equal_groups:
        train_trajs, train_scored = trajs, scored
    times["reward"], t = time.time() - t, time.time()
    stats = {}
    if train_trajs:
        if opt is None or cfg.reset_optimizer:  # each iteration is a new mirror-descent problem
            opt = build_optimizer(list(model.parameters()), cfg.optim)
        model.train()
        batch = scoring_batch(processor, train_trajs, it, cfg.mask_old_segments).to(model.device)
        stats = train_on(model, batch, train_scored, cfg, opt)
    times["train"] = time.time() - t
    return {**iteration_metrics(trajs, scored, zero_var, state.buffer, times), **stats,
            "length_weight": weight}, opt


def main(cfg: RLConfig) -> Path:
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    save_config(cfg, out / "config.yaml")
    model, processor = load_pretrained(cfg.init_from)
    samples = load_data(cfg.sources)
    state = RLState(cfg, samples)
    ckpt = latest_checkpoint(out) if cfg.resume else None
    if ckpt is not None:
        state.load(ckpt, model, {s.id: s for s in samples})
        print(f"[rl] resuming from {ckpt} (iteration {state.iteration})")
    reward_fn = REWARDS.build(cfg.reward.name, **cfg.reward.kwargs)
    log, opt = MetricsLog(out / "metrics.jsonl"), None
    while state.iteration < cfg.iterations:
        metrics, opt = run_iteration(model, processor, samples, state, cfg, reward_fn, opt)
        state.iteration += 1
        if cfg.eval_sources and cfg.eval_every and state.iteration % cfg.eval_every == 0:
            rep = final_eval(model, processor, cfg.eval_sources, cfg.eval_max_new_tokens,
                             out / "eval" / f"iter-{state.iteration}", f"RL iteration {state.iteration}")
            metrics.update({f"eval/{k}": v["pass@1"] for k, v in rep["by_modality"].items()},
                           **{"eval/overall": rep["overall"]["pass@1"]})
        log.log(state.iteration, **metrics)
        print(f"[rl] it {state.iteration}: reward {metrics.get('reward', 0):.3f} acc {metrics.get('accuracy', 0):.3f} "
              f"len {metrics.get('length_mean', 0):.0f} buffer {metrics.get('buffer', 0)}")
        if cfg.save_every and (state.iteration % cfg.save_every == 0 or state.iteration == cfg.iterations):
            state.save(out, model, processor)
    save_pretrained(model, processor, out)
    plot_curves(out / "metrics.jsonl", CURVES, out / "curves.png", f"RL ({cfg.loss.name})")
    print(f"[save] model -> {out} (curves: {out / 'curves.png'})")
    return out
