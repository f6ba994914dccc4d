"""The rollout engine: k responses per prompt, continued partial rollouts, repeat early-stop.

Each iteration: new prompts get k samples from one shared prefill (the image is encoded once per prompt);
trajectories waiting in the replay buffer are continued from their partial response. Every trajectory
samples with its own key (run seed, iteration started, prompt id, sample index; a continuation: its key
and the iteration), so a rollout draws the same responses on any number of processes. Every trajectory
gets at most ``budget`` new tokens this iteration; one that reaches neither EOS nor the total
``max_response_tokens`` goes (back) to the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from processors.processor import MultimodalProcessor
from vlrl.models.decoding import DECODERS
from vlrl.models.generation import SamplingParams, generate_texts
from vlrl.models.keyed_random import mix
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
    compile: bool = False  # decode through torch.compile: ~1 min once per run, then faster rollouts (results.md)
    # the LLM's decode loop: auto (vlrl's Llama-family decoder where it applies, else the model's forward),
    # llama, or transformers (the model's own forward, e.g. to check the other against it)
    decoder: str = "auto"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:  # at config load, not at the first rollout
            raise ValueError(f"rollout.decoder must be one of {', '.join(DECODERS)}, got '{self.decoder}'")


def _generate(model, processor, samples: Sequence[Sample], prefixes: Sequence[list[int]], counts: Sequence[int],
              caps: Sequence[int], cfg: RolloutConfig,
              keys: Sequence[int]) -> tuple[list[list[int]], list[list[float]], list[str], list[int]]:
    """Rows of new tokens, their sampled log-probs, finish reasons and the prompt each row belongs to;
    prompt i gets ``counts[i]`` samples of at most ``caps[i]`` tokens, all prompts of a batch in one loop."""
    params = SamplingParams(max_new_tokens=max(caps), temperature=cfg.temperature, top_p=cfg.top_p,
                            repeat_max_period=cfg.repeat_max_period, repeat_times=cfg.repeat_times,
                            compile=cfg.compile, decoder=cfg.decoder)
    out = generate_texts(model, processor, samples, params, prefixes=prefixes, counts=counts, caps=caps,
                         batch_size=cfg.batch_size, row_keys=keys)
    return out.tokens, out.logprobs, out.finish_reasons, out.prompt_index


def _settle(traj: Trajectory, new: list[int], logprobs: list[float], reason: str, cfg: RolloutConfig, iteration: int,
            buffer: ReplayBuffer, done: list[Trajectory]) -> None:
    traj.add_segment(new, iteration, logprobs)
    if reason in ("stop", "repeat"):
        traj.finish = reason
    elif len(traj.tokens) >= cfg.max_response_tokens or reason == "context":  # no room left to continue
        traj.finish = "max_length"
    else:
        buffer.put(traj, iteration)  # cut by this iteration's budget: continue next iteration
        return
    done.append(traj)


@torch.no_grad()
def rollout(model: VisionLanguageModel, processor: MultimodalProcessor, prompts: Sequence[Sample],
            buffer: ReplayBuffer, iteration: int, cfg: RolloutConfig, seed: int = 0) -> list[Trajectory]:
    """Continue the buffer's trajectories and start k new ones per prompt; return those that finished
    this iteration (the rest are back in ``buffer``). ``seed``: the run's, part of every new key."""
    if not isinstance(seed, int):  # a torch.Generator from before keyed sampling
        raise TypeError(f"rollout: seed must be an int (trajectories sample with keys made from it), got "
                        f"{type(seed).__name__}")
    done: list[Trajectory] = []
    budget = cfg.budget or cfg.max_response_tokens
    waiting = buffer.take_all()
    # continued trajectories (1 sample each, their remaining budget) and new prompts (k samples each)
    # share one generation loop, so short new tasks fill the batch while long ones are continued
    samples = [t.sample for t in waiting] + list(prompts)
    prefixes = [t.tokens for t in waiting] + [[] for _ in prompts]
    counts = [1] * len(waiting) + [cfg.k] * len(prompts)
    caps = [max(1, min(budget, cfg.max_response_tokens - len(t.tokens))) for t in waiting]
    caps += [min(budget, cfg.max_response_tokens)] * len(prompts)
    if not samples:
        return done
    keys = [mix(t.key, iteration) for t in waiting]
    new_keys = [mix(seed, iteration, p.id, j) for p in prompts for j in range(cfg.k)]
    toks, lps, reasons, owner = _generate(model, processor, samples, prefixes, counts, caps, cfg, keys + new_keys)
    for r, (new, lp, why, p) in enumerate(zip(toks, lps, reasons, owner)):
        if p < len(waiting):
            t = waiting[p]
            new, lp = new[: cfg.max_response_tokens - len(t.tokens)], lp[: cfg.max_response_tokens - len(t.tokens)]
        else:
            t = Trajectory(prompts[p - len(waiting)], started=iteration, key=new_keys[r - len(waiting)])
        _settle(t, new, lp, why, cfg, iteration, buffer, done)
    return done
