"""What a resumed RL run needs besides the weights (:class:`RLState`): the iteration, the optimizer and its
schedule, per-prompt success rates, the partial-rollout and replay stores, the prompt-sampling generator.
Saved and loaded as one checkpoint that resumes on any number of processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vlrl.algos.sampling import SuccessTracker
from vlrl.checkpoint import load_checkpoint_state, save_checkpoint
from vlrl.distributed import barrier, gather_objects, is_main, world
from vlrl.models.builder import WEIGHTS_NAME
from vlrl.rollout import ReplayBuffer
from vlrl.rollout.replay import GroupReplay
from vlrl.sharding import Policy, full_optimizer_state, load_optimizer_state
from vlrl.training import OptimizerSchedule, build_optimizer, rng_state, set_rng_state

if TYPE_CHECKING:
    from vlrl.stages.rl import RLConfig


def total_optimizer_steps(cfg: RLConfig) -> int:
    """The run's optimizer steps when every rollout finishes (the LR decay's horizon)."""
    per_pass = math.ceil(cfg.prompts_per_iteration * cfg.rollout.k / cfg.minibatch_size)
    return cfg.iterations * cfg.steps_per_iteration * per_pass


class RLState:
    """Everything a resumed run needs besides the weights: iteration, success rates, replay buffers (one
    per process) and the prompt-sampling generator (shared by all processes). Rollouts need no generator
    state: each trajectory samples with its own key (``vlrl.rollout.engine``)."""

    def __init__(self, cfg: RLConfig, samples: list) -> None:
        self.iteration = 0
        self.optimizer_steps = 0  # over the run (the LR schedule's position)
        self.opt: torch.optim.Optimizer | None = None
        self.sched: OptimizerSchedule | None = None
        self.tracker = SuccessTracker([s.id for s in samples],
                                      {s.id: s.meta["pass_rate"] for s in samples if "pass_rate" in s.meta})
        self.buffer = ReplayBuffer(cfg.rollout.max_age)
        self.replay = GroupReplay(cfg.replay.max_age)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def optimizer(self, model, cfg: RLConfig) -> tuple[torch.optim.Optimizer, OptimizerSchedule]:
        """The iteration's optimizer and LR schedule: a fresh AdamW each iteration with
        ``reset_optimizer`` (each iteration is a new mirror-descent problem), else one for the whole run."""
        if self.opt is None or cfg.reset_optimizer:
            self.opt = build_optimizer(list(model.parameters()), cfg.optim)
            self.sched = OptimizerSchedule(self.opt, cfg.optim, total_optimizer_steps(cfg), self.optimizer_steps)
        return self.opt, self.sched

    def resume_optimizer(self, model, cfg: RLConfig, saved: dict) -> None:
        """The run's one optimizer (no ``reset_optimizer``) with a checkpoint's ``saved`` state (by parameter
        name, so any sharding loads it) and its schedule at the saved step."""
        self.opt = build_optimizer(list(model.parameters()), cfg.optim)
        load_optimizer_state(model, self.opt, saved)
        self.sched = OptimizerSchedule(self.opt, cfg.optim, total_optimizer_steps(cfg), self.optimizer_steps,
                                       local=self.optimizer_steps)

    def save(self, out: Path, policy: Policy, processor, with_optimizer: bool = False, keep: int = 2,
             config: dict | None = None) -> None:
        """Collective: every process contributes its buffer (and, sharded, its part of the weights and
        optimizer state); the main one writes whole weights, and the optimizer state by parameter name
        when ``with_optimizer`` (a run without per-iteration reset carries it across iterations), so
        that a run resumes on any number of processes."""
        opt = full_optimizer_state(policy.train, self.opt) if with_optimizer and self.opt is not None else None
        model = policy.full()
        buffers = gather_objects(self.buffer.state_dict())
        replays = gather_objects(self.replay.state_dict())
        if is_main():
            tensors = {"rng": rng_state(), "generator": self.generator.get_state(), **self.tracker.state_dict()}
            if opt is not None:
                tensors["optimizer"] = opt
            save_checkpoint(out, model, processor, tensors, {"step": self.iteration, "buffers": buffers,
                                                             "replays": replays,
                                                             "optimizer_steps": self.optimizer_steps,
                                                             "config": config}, keep)
        barrier()

    def load(self, ckpt: Path, model, samples_by_id: dict) -> dict | None:
        """Every process reads the checkpoint; saved buffers are pooled and dealt out again by rank, so a
        run may resume on a different number of processes. Returns the saved optimizer state, if any."""
        from safetensors.torch import load_model

        rank, n = world()
        state, tensors = load_checkpoint_state(ckpt)
        load_model(model, str(ckpt / WEIGHTS_NAME), strict=True, device=str(model.device))
        self.iteration = int(state["step"])
        self.optimizer_steps = int(state.get("optimizer_steps", 0))
        buffers = state["buffers"]
        pooled = {"max_age": buffers[0]["max_age"], "expired": sum(b["expired"] for b in buffers) if rank == 0 else 0,
                  "items": [it for b in buffers for it in b["items"]][rank::n]}
        self.buffer.load_state_dict(pooled, samples_by_id)
        replays = state.get("replays") or [{"max_age": self.replay.max_age, "items": []}]
        self.replay.load_state_dict({"max_age": replays[0]["max_age"],
                                     "items": [it for r in replays for it in r["items"]][rank::n]}, samples_by_id)
        self.tracker.load_state_dict(tensors)
        self.generator.set_state(tensors["generator"])  # an older checkpoint's rollout_gen.* are not needed
        set_rng_state(tensors["rng"])
        return tensors.get("optimizer")
