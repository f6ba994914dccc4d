"""The rollout engine: k responses per prompt, continued partial rollouts, repeat early-stop.

Each iteration: new prompts get k samples from one shared prefill (the image is encoded once per prompt);
trajectories waiting in the replay buffer are continued from their partial response. Every trajectory
gets at most ``budget`` new tokens this iteration; one that reaches neither EOS nor the total
``max_response_tokens`` goes (back) to the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from processors.collate import collate_generation
from processors.processor import MultimodalProcessor
from vlrl.models.generation import SamplingParams, generate
from vlrl.models.vlm import VisionLanguageModel
from vlrl.rollout.buffer import ReplayBuffer, Trajectory
from vlrl.types import Sample


@dataclass
class RolloutConfig:
    k: int = 8  # responses per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_response_tokens: int = 256  # total cap of one response, over all its segments
    budget: int = 0  # new tokens per trajectory per iteration (0 = no partial rollouts: the whole response)
    max_age: int = 2  # iterations a trajectory may span before it is dropped
    repeat_max_period: int = 8  # 0 disables repeat detection
    repeat_times: int = 4
    batch_size: int = 32  # prompts (or continued trajectories) per generation call


def _generate(model, processor, samples: Sequence[Sample], prefixes: Sequence[list[int]], k: int,
              max_new: int, cfg: RolloutConfig, generator) -> tuple[list[list[int]], list[str]]:
    params = SamplingParams(max_new_tokens=max_new, temperature=cfg.temperature, top_p=cfg.top_p, num_samples=k,
                            repeat_max_period=cfg.repeat_max_period, repeat_times=cfg.repeat_times)
    tokens, reasons = [], []
    for i in range(0, len(samples), cfg.batch_size):
        enc = [processor.encode(s, p or None, add_eos=False) for s, p in
               zip(samples[i : i + cfg.batch_size], prefixes[i : i + cfg.batch_size])]
        batch = collate_generation(enc, processor.pad_token_id).to(model.device)
        out = generate(model, batch, params, processor.eos_token_id, generator)
        tokens += out.tokens
        reasons += out.finish_reasons
    return tokens, reasons


def _settle(traj: Trajectory, new: list[int], reason: str, cfg: RolloutConfig, iteration: int,
            buffer: ReplayBuffer, done: list[Trajectory]) -> None:
    traj.add_segment(new, iteration)
    if reason in ("stop", "repeat"):
        traj.finish = reason
    elif len(traj.tokens) >= cfg.max_response_tokens:
        traj.finish = "max_length"
    else:
        buffer.put(traj, iteration)  # cut by this iteration's budget: continue next iteration
        return
    done.append(traj)


@torch.no_grad()
def rollout(model: VisionLanguageModel, processor: MultimodalProcessor, prompts: Sequence[Sample],
            buffer: ReplayBuffer, iteration: int, cfg: RolloutConfig,
            generator: torch.Generator | None = None) -> list[Trajectory]:
    """Continue the buffer's trajectories and start k new ones per prompt; return those that finished
    this iteration (the rest are back in ``buffer``)."""
    done: list[Trajectory] = []
    budget = cfg.budget or cfg.max_response_tokens
    waiting = buffer.take_all()
    if waiting:
        max_new = min(budget, max(1, cfg.max_response_tokens - min(len(t.tokens) for t in waiting)))
        toks, reasons = _generate(model, processor, [t.sample for t in waiting], [t.tokens for t in waiting], 1,
                                  max_new, cfg, generator)
        for t, new, why in zip(waiting, toks, reasons):
            new = new[: cfg.max_response_tokens - len(t.tokens)]
            _settle(t, new, why, cfg, iteration, buffer, done)
    if prompts:
        toks, reasons = _generate(model, processor, prompts, [[] for _ in prompts], cfg.k,
                                  min(budget, cfg.max_response_tokens), cfg, generator)
        for row, (new, why) in enumerate(zip(toks, reasons)):
            t = Trajectory(prompts[row // cfg.k], started=iteration)
            _settle(t, new, why, cfg, iteration, buffer, done)
    return done
