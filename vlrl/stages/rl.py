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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from vlrl.algos import LOSSES
from vlrl.algos.update import UpdateConfig, policy_update
from vlrl.algos.sampling import CurriculumStage, sample_prompts
from vlrl.checkpoint import check_resume_config, latest_checkpoint
from vlrl.config import LoRAConfig, OptimConfig, save_config, to_dict
from vlrl.eval.curves import plot_curves, plot_heldout
from vlrl.models import load_pretrained, save_pretrained
from vlrl.rewards.combine import ScoredBatch, score_trajectories
from vlrl.rewards.length import length_penalty_weight
from vlrl.stages.rl_state import RLState
from vlrl.rollout import RolloutConfig, rollout
from vlrl.rollout.replay import ReplayConfig, with_replayed
from vlrl.rollout.scoring import sampled_logprobs, scoring_batch
from vlrl.rollout.stats import iteration_metrics, keep_informative
from vlrl.data import load_data
from vlrl.eval.heldout import copy_evaluation, evaluate_held_out, stage_evaluation
from vlrl.models.builder import enable_gradient_checkpointing
from vlrl.models.lora import add_lora
from vlrl.models.trainable import MODULES, set_trainable
from vlrl.rewards.config import RewardConfig, verifier_config
from vlrl.distributed import all_sum, barrier, gather_objects, init_from_launcher, is_main, launcher_precision, world
from vlrl.sharding import Policy, launcher_strategy
from vlrl.guards import NonFiniteError, require_finite_rewards, require_finite_weights
from vlrl.training import MetricsLog, seed_everything


CURVES = ("reward", "accuracy", "accuracy_fresh", "eval/overall", "eval/image", "eval/text", "eval/text_rendered",
          "eval_sampled/overall", "eval_sampled/image", "eval_sampled/text", "length_mean",
          "entropy", "approx_kl", "optimizer_steps", "lr", "log_ratio_abs_max", "sampling_logprob_diff_max",
          "grad_norm", "zero_variance_groups", "buffer")


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
    # draw only prompts not drawn before while enough remain (then all again): every iteration's training
    # accuracy is then on prompts the policy has never trained on, and no rollout goes to a repeat
    no_repeat: bool = False


@dataclass
class RLConfig:
    init_from: str = "runs/tiny/warmup"
    sources: List[Any] = field(default_factory=list)  # RL prompts (with reference answers)
    eval_sources: List[Any] = field(default_factory=list)
    eval_every: int = 10
    eval_at_start: bool = False  # also evaluate the starting model (logged as iteration 0, drawn in the curves)
    eval_max_new_tokens: int = 256
    # also pass@1 as the mean over this many samples at rollout.temperature (0: greedy only): what RL
    # optimizes, and the paper's "Pass@1 averaged over 8 runs"; logged as eval_sampled/<modality>
    eval_samples: int = 0
    iterations: int = 30
    prompts_per_iteration: int = 8
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    reward: RewardConfig = field(default_factory=verifier_config)  # trains and evaluates
    length_penalty: LengthPenaltyConfig = field(default_factory=LengthPenaltyConfig)
    repeat_penalty: float = 0.0
    mask_old_segments: bool = True
    # earlier iterations' groups with a correct response, drawn into each update among the iteration's own
    # (vlrl.rollout.replay; off at groups 0, not in k1.5): the optimizer steps then follow more prompts
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, schedule="constant"))
    train: List[str] = field(default_factory=lambda: list(MODULES))  # modules RL updates; the rest stay frozen
    lora: Optional[LoRAConfig] = None  # train adapters of the `train` modules instead of their weights
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory)
    # auto | none | fsdp: "fsdp" shards parameters, gradients and Adam state over the processes (FSDP2) for
    # the update, and rolls out from whole weights gathered once per iteration; "auto" follows the launcher
    # (accelerate launch --config_file configs/accelerate/fsdp.yaml); one process never shards
    sharding: str = "auto"
    # auto | fp32 | bf16: bf16 runs every forward (rollouts, scoring, the update) under bf16 autocast with
    # fp32 master weights and optimizer state (under FSDP: the engine's bf16 all-gathers, fp32 reductions);
    # "auto" follows the launcher's --mixed_precision. The sampler's and the loss's log-probs then differ by
    # bf16 rounding (docs/guide.md has the measured tolerance), so the log-ratio is not exactly 0 at an
    # iteration's first step with reference: sampler; reference: recompute makes it 0 again
    precision: str = "auto"
    steps_per_iteration: int = 2  # passes over the iteration's responses
    # trust region: stop an iteration's optimizer steps once the policy's mean per-token KL to pi_theta_i on
    # the minibatch just scored passes this (0 = off); Adam's per-weight steps move the policy much further
    # in KL along the RL gradient than along an SFT one, so the safe step size is set in KL, not in lr
    target_kl: float = 0.0
    # log pi_theta_i for the loss: "sampler" reuses the log-probs the rollout recorded under the same weights
    # (a scoring pass saved; older partial-rollout segments in the loss are rescored); "recompute" scores
    # every response again (exactness checks: sampling_logprob_diff_max then compares the two)
    reference: str = "sampler"
    # no forward or backward for responses of zero advantage (the loss's inert_rows; with kimi's
    # negative_weight 0, every one at or below its group's mean): exact at an iteration's first step, then
    # it drops their part of the tau regulariser (vlrl.algos.update.UpdateConfig.skip_inert)
    skip_inert_rows: bool = False
    minibatch_size: int = 64  # responses per optimizer step
    micro_batch_size: int = 16  # responses per forward/backward (memory); gradients accumulate to the minibatch
    reset_optimizer: bool = True
    save_every: int = 10
    export_llava: bool = False  # also write the final model as a transformers LLaVA in output_dir/hf
    save_adapter: bool = False  # with lora: also the adapter alone (peft, LLaVA layout) in output_dir/adapter
    resume: bool = True
    resume_allow_changes: bool = False  # resuming under other settings is an error naming them; true applies them
    seed: int = 0
    output_dir: str = "runs/tiny/rl"


GROUP_BASELINE_LOSSES = ("kimi", "grpo", "rloo")  # their advantage is the reward minus the group's mean


def check_sizes(cfg: RLConfig) -> None:
    """Sizes that would make an RL run train nothing, or fail later with an unclear error."""
    for key in ("iterations", "prompts_per_iteration", "minibatch_size", "micro_batch_size", "steps_per_iteration"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"rl: {key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.rollout.k < 1:
        raise ValueError(f"rl: rollout.k must be at least 1, got {cfg.rollout.k}")
    update_config(cfg)  # UpdateConfig checks its own keys (reference) before the first rollout
    if cfg.replay.groups < 0 or cfg.replay.max_age < 1:
        raise ValueError(f"rl: replay.groups must be >= 0 and replay.max_age >= 1, got {cfg.replay.groups} and "
                         f"{cfg.replay.max_age}")
    if cfg.replay.groups and cfg.mask_old_segments:
        raise ValueError("rl: replay.groups > 0 needs mask_old_segments=false: a replayed response was written by "
                         "an earlier iteration's policy, so masking older segments would leave it no loss token")
    if cfg.rollout.k == 1 and cfg.loss.name in GROUP_BASELINE_LOSSES:
        raise ValueError(f"rl: rollout.k=1 with loss '{cfg.loss.name}': each prompt's one response is its own "
                         f"baseline, so every advantage is 0 and nothing trains; use rollout.k >= 2 (k1.5: 8)")


def update_config(cfg: RLConfig) -> UpdateConfig:
    """The update's settings, gathered from the stage config."""
    return UpdateConfig(passes=cfg.steps_per_iteration, minibatch_size=cfg.minibatch_size,
                        micro_batch_size=cfg.micro_batch_size, grad_clip=cfg.optim.grad_clip,
                        temperature=cfg.rollout.temperature, target_kl=cfg.target_kl, reference=cfg.reference,
                        skip_inert=cfg.skip_inert_rows)


def train_on(model, batch, scored, cfg: RLConfig, opt, sampled=None, scheduler=None, where: str = "rl") -> dict:
    """The iteration's update (``vlrl.algos.update.policy_update``) with this config's loss and sizes;
    ``batch`` and ``scored`` may be empty (a process with no trajectories to train on this iteration),
    ``sampled`` holds the sampler's log-probs, ``where`` names the iteration in errors."""
    return policy_update(model, batch, scored.rewards, scored.group, LOSSES.get(cfg.loss.name),
                         cfg.loss.kwargs.get(cfg.loss.name, {}), opt, update_config(cfg), sampled, scheduler,
                         where=where)


def _update_tracker(state: RLState, trajs, scored) -> None:
    """Per-prompt accuracy of this iteration, from every process, into every process's tracker."""
    local = [(sid, float(scored.correct[[x.sample.id == sid for x in trajs]].float().mean()))
             for sid in dict.fromkeys(x.sample.id for x in trajs)]
    for part in gather_objects(local):
        for sid, acc in part:
            state.tracker.update(sid, acc)


def _score(processor, trajs, it: int, cfg: RLConfig, reward_fn):
    weight = length_penalty_weight(it, cfg.length_penalty.warmup_iterations, cfg.length_penalty.weight)
    scored = score_trajectories([processor.decode(x.tokens) for x in trajs], [x.sample for x in trajs],
                                [len(x.tokens) for x in trajs], [x.finish for x in trajs], reward_fn, weight,
                                cfg.repeat_penalty)
    return scored, weight


@dataclass
class Shard:
    """This process's part of one iteration: the trajectories that finished, their scores, and per
    trajectory whether its prompt was drawn for the first time this iteration. Empty (never None) when
    every prompt of the process went back to the replay buffer."""

    trajs: list
    scored: ScoredBatch
    fresh: list[bool]


def _local_phase(model, processor, samples, state: RLState, cfg: RLConfig, reward_fn) -> tuple[Shard, float, dict]:
    """No collectives: draw the iteration's prompts (every process draws the same ones and takes every
    world-th), roll them out (plus the buffer's continuations) and score what finished. Returns the
    shard, the length-penalty weight and the phase times."""
    it, times, t = state.iteration, {}, time.time()
    rank, n_proc = world()
    idx = sample_prompts(cfg.prompts_per_iteration, [s.difficulty for s in samples], state.tracker.rates, it,
                         cfg.sampling.strategy, cfg.sampling.curriculum, cfg.sampling.floor, state.generator,
                         state.tracker.drawn if cfg.sampling.no_repeat else None)
    first = {samples[i].id for i in state.tracker.mark_drawn(idx)}  # every process marks the same prompts
    trajs = rollout(model, processor, [samples[i] for i in idx[rank::n_proc]], state.buffer, it, cfg.rollout,
                    cfg.seed)
    times["rollout"], t = time.time() - t, time.time()
    scored, weight = _score(processor, trajs, it, cfg, reward_fn)
    times["reward"] = time.time() - t
    return Shard(trajs, scored, [x.started == it and x.sample.id in first for x in trajs]), weight, times


def _sync_phase(state: RLState, shard: Shard, cfg: RLConfig) -> tuple[Shard, Shard, list[tuple], list[float]]:
    """Every collective before the update, called on every process in this order: success rates into
    every process's tracker, the per-trajectory records, the counters. Returns the iteration's own shard
    to train on (without all-equal groups under ``skip_equal_groups``), the update's shard (that one with
    the replayed groups mixed in, ``cfg.replay``), every process's records and the summed counters
    (zero-variance groups, groups, buffer size, expired, verifier errors, trajectories to train, replayed)."""
    _check_rewards(shard, cfg, state.iteration)
    _update_tracker(state, shard.trajs, shard.scored)
    kept_trajs, kept_scored, groups = keep_informative(shard.trajs, shard.scored)
    own = Shard(kept_trajs, kept_scored, []) if cfg.sampling.skip_equal_groups else shard
    train = own
    if cfg.replay.groups and len(state.replay):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state.iteration)  # resumes exactly
        trajs, scored = with_replayed(own.trajs, own.scored, state.replay.draw(cfg.replay.groups, gen), gen)
        train = Shard(trajs, scored, [])
    local = [(x.sample.modality, float(shard.scored.rewards[i]), bool(shard.scored.correct[i]), len(x.tokens),
              shard.fresh[i]) for i, x in enumerate(shard.trajs)]
    records = [r for part in gather_objects(local) for r in part]
    sums = all_sum([*groups, len(state.buffer), state.buffer.expired, len(shard.scored.errors), len(train.trajs),
                    len(train.trajs) - len(own.trajs)])
    return own, train, records, sums


def _check_rewards(shard: Shard, cfg: RLConfig, iteration: int) -> None:
    """Stop every process when any process scored a response non-finite (collective: one process
    raising alone would leave the others waiting in the next collective)."""
    local = int((~torch.isfinite(shard.scored.rewards)).sum())
    if all_sum([float(local)])[0] > 0:
        where = f"rl iteration {iteration + 1}"
        if local:
            require_finite_rewards(shard.scored.rewards, [x.sample.id for x in shard.trajs], cfg.reward.name, where)
        raise NonFiniteError(f"{where}: reward '{cfg.reward.name}' returned a non-finite value on another process")


def _train(policy: Policy, processor, train: Shard, state: RLState, cfg: RLConfig) -> dict:
    """The iteration's update on this process's trajectories (possibly none); non-finite weights after it
    stop the run before anything is saved. Collective."""
    model = policy.train
    opt, sched = state.optimizer(model, cfg)
    model.train()
    batch = scoring_batch(processor, train.trajs, state.iteration, cfg.mask_old_segments).to(model.device)
    sampled = sampled_logprobs(train.trajs, batch, state.iteration)
    where = f"rl iteration {state.iteration + 1}"
    stats = train_on(model, batch, train.scored, cfg, opt, sampled, sched, where=where)
    policy.updated()
    require_finite_weights(policy.full(), f"{where}, after the update")
    state.optimizer_steps = sched.done
    return {**stats, "lr": opt.param_groups[0]["lr"]}


def run_iteration(policy: Policy, processor, samples, state: RLState, cfg: RLConfig, reward_fn) -> dict:
    """One iteration: a local phase (draw, roll out from whole weights, score), one sync phase, then the
    update (skipped on every process when no process has a trajectory to train on). Collective under
    several processes."""
    shard, weight, times = _local_phase(policy.full(), processor, samples, state, cfg, reward_fn)
    if shard.scored.errors:  # on the console too, not only in metrics.jsonl
        rank = f" (process {world()[0]})" if world()[1] > 1 else ""
        print(f"[rl] it {state.iteration + 1}: {len(shard.scored.errors)} verifier errors{rank}, e.g. "
              f"{shard.scored.errors[0]}")
    own, train, records, sums = _sync_phase(state, shard, cfg)
    t = time.time()
    stats = _train(policy, processor, train, state, cfg) if sums[5] > 0 else {}
    times["train"] = time.time() - t
    if cfg.replay.groups:
        state.replay.add(state.iteration, own.trajs, own.scored)
    if not records:
        return {"trajectories": 0, "buffer": int(sums[2])}
    metrics = iteration_metrics(records, (sums[0], sums[1]), (sums[2], sums[3]), times, int(sums[4]))
    extra = {"replayed_rows": int(sums[6])} if cfg.replay.groups else {}
    return {**metrics, **stats, **extra, "length_weight": weight, "processes": world()[1]}


def _evaluate(policy: Policy, processor, cfg: RLConfig, out: Path, iteration: int) -> dict:
    """Held-out evaluation on the main process (the others wait): greedy, and over ``eval_samples``
    samples at the rollout temperature. Iteration 0's greedy one is the starting model's own stage's
    evaluation when that used the same settings (``stage_evaluation``), copied rather than repeated."""
    metrics: dict = {}
    model = policy.full()  # collective when sharded
    if is_main():
        d, title = out / "eval" / f"iter-{iteration}", f"RL iteration {iteration}"
        runs = [("eval", d, 1, 0.0)] + ([("eval_sampled", d / "sampled", cfg.eval_samples, cfg.rollout.temperature)]
                                        if cfg.eval_samples > 0 else [])
        for key, where, n, temperature in runs:
            done = (stage_evaluation(cfg.init_from, cfg.eval_sources, cfg.eval_max_new_tokens, cfg.reward,
                                     model.precision) if iteration == 0 and n == 1 and not cfg.lora else None)
            if done is not None:
                print(f"[eval] iteration 0 (greedy): the starting model's evaluation in {done}, reused")
            rep = (copy_evaluation(done, where, title) if done is not None else
                   evaluate_held_out(model, processor, cfg.eval_sources, cfg.eval_max_new_tokens, where, title,
                                     cfg.reward, n=n, temperature=temperature))
            metrics.update({f"{key}/{k}": v["pass@1"] for k, v in rep["by_modality"].items()})
            metrics[f"{key}/overall"] = rep["overall"]["pass@1"]
    barrier()
    return metrics


def load_policy(cfg: RLConfig):
    """The starting policy on this process's device, with the run's precision, gradient checkpointing,
    LoRA adapters and trainable modules."""
    from accelerate import PartialState

    model, processor = load_pretrained(cfg.init_from, device=PartialState().device,
                                       precision=launcher_precision(cfg.precision, "rl"))
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if cfg.lora is not None:
        if cfg.lora.dropout > 0:  # a stochastic forward would make pi_theta_i's log-probs inexact
            raise ValueError("rl: lora.dropout must be 0 (the log-ratio to pi_theta_i is exactly 0 at an "
                             "iteration's first step only with a deterministic forward)")
        add_lora(model, cfg.lora)
    set_trainable(model, cfg.train, key="rl train")
    return model, processor


def _start(cfg: RLConfig, out: Path) -> tuple[Policy, Any, list, RLState, Path | None]:
    """The policy (weights of the latest checkpoint when resuming, then sharded if the run is), the
    processor, the prompts, the run state and the checkpoint resumed from (None for a fresh run)."""
    strategy = launcher_strategy(cfg.sharding, "rl")
    model, processor = load_policy(cfg)
    samples = load_data(cfg.sources, processor=processor)  # rows the processor rejects are skipped and listed
    state = RLState(cfg, samples)
    ckpt = latest_checkpoint(out) if cfg.resume else None
    opt_state = None
    if ckpt is not None:
        check_resume_config(ckpt, to_dict(cfg), cfg.resume_allow_changes, out)
        opt_state = state.load(ckpt, model, {s.id: s for s in samples})  # whole weights, before sharding
    policy = Policy(model, strategy)
    if strategy == "fsdp" and is_main():
        print(f"[rl] FSDP2: parameters, gradients and optimizer state sharded over {world()[1]} processes")
    if model.precision == "bf16" and is_main():
        print("[rl] bf16 autocast, fp32 master weights and optimizer state")
    if opt_state is not None and not cfg.reset_optimizer:  # the run's one optimizer, where it was
        state.resume_optimizer(policy.train, cfg, opt_state)
    if ckpt is not None:
        print(f"[rl] resuming from {ckpt} (iteration {state.iteration})")
    return policy, processor, samples, state, ckpt


def _finish(policy: Policy, processor, cfg: RLConfig, out: Path) -> None:
    """Write the final whole-weight model once (and its LLaVA export / adapter), and the plots."""
    model = policy.full()  # collective when sharded
    if is_main():
        save_pretrained(model, processor, out)
        from vlrl.models.llava import save_llava_copy

        if cfg.export_llava:
            save_llava_copy(model, processor, out / "hf")
        if cfg.save_adapter:
            save_llava_copy(model, processor, out / "adapter", adapter_base=cfg.init_from)
        plot_curves(out / "metrics.jsonl", CURVES, out / "curves.png", f"RL ({cfg.loss.name})")
        plot_heldout(out, out / "heldout.png", f"RL ({cfg.loss.name}): held-out pass@1")
        print(f"[save] model -> {out} (curves: {out / 'curves.png'})")
    barrier()


def main(cfg: RLConfig) -> Path:
    init_from_launcher()
    check_sizes(cfg)
    if cfg.prompts_per_iteration < world()[1]:
        raise ValueError(f"rl: prompts_per_iteration ({cfg.prompts_per_iteration}) must be at least the number "
                         f"of processes ({world()[1]}): prompts are sharded over processes")
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    if is_main():
        save_config(cfg, out / "config.yaml")
    policy, processor, samples, state, ckpt = _start(cfg, out)
    reward_fn = cfg.reward.build()
    # rows an interrupted run logged after its last checkpoint are dropped: each iteration logged once
    keep = state.iteration if ckpt is not None else -1
    log = MetricsLog(out / "metrics.jsonl", keep_through=keep) if is_main() else None
    if cfg.eval_at_start and cfg.eval_sources and state.iteration == 0:
        start = _evaluate(policy, processor, cfg, out, 0)
        if log:
            log.log(0, **start)
    while state.iteration < cfg.iterations:
        metrics = run_iteration(policy, processor, samples, state, cfg, reward_fn)
        state.iteration += 1
        if cfg.eval_sources and cfg.eval_every and state.iteration % cfg.eval_every == 0:
            metrics.update(_evaluate(policy, processor, cfg, out, state.iteration))
        if log:
            log.log(state.iteration, **metrics)
            print(f"[rl] it {state.iteration}: reward {metrics.get('reward', 0):.3f} acc "
                  f"{metrics.get('accuracy', 0):.3f} len {metrics.get('length_mean', 0):.0f} "
                  f"buffer {metrics.get('buffer', 0)}")
        if cfg.save_every and (state.iteration % cfg.save_every == 0 or state.iteration == cfg.iterations):
            state.save(out, policy, processor, not cfg.reset_optimizer, config=to_dict(cfg))
    _finish(policy, processor, cfg, out)
    return out
