"""The total reward of each finished trajectory: verified correctness + weighted k1.5 length reward +
an optional penalty for responses cut by repeat detection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from vlrl.rewards.base import RewardFn
from vlrl.rewards.length import length_reward


@dataclass
class ScoredBatch:
    """Per trajectory (B,): total reward, correctness, length and prompt group; plus verifier errors."""

    rewards: torch.Tensor
    correct: torch.Tensor
    lengths: torch.Tensor
    group: torch.Tensor
    errors: list[str]


def score_trajectories(texts: Sequence[str], samples: Sequence, lengths: Sequence[int], finish: Sequence[str],
                       reward_fn: RewardFn, length_weight: float = 0.0, repeat_penalty: float = 0.0) -> ScoredBatch:
    """Args: per trajectory the decoded response, its sample, token length and finish reason.

    reward = r + length_weight * len_reward (per-prompt min/max) - repeat_penalty * [looped], with r the
    reward function's value (1 / 0 for a verified answer; partial credit passes through) and correct = r >= 1
    """
    results = [reward_fn(t, s) for t, s in zip(texts, samples)]
    ids = {sid: n for n, sid in enumerate(dict.fromkeys(s.id for s in samples))}
    group = torch.tensor([ids[s.id] for s in samples], dtype=torch.long)
    correct = torch.tensor([r.reward >= 1.0 for r in results], dtype=torch.bool)
    lens = torch.tensor(list(lengths), dtype=torch.float32)
    rewards = torch.tensor([r.reward for r in results], dtype=torch.float32)
    if length_weight:
        rewards = rewards + length_weight * length_reward(lens, correct, group)
    if repeat_penalty:
        rewards = rewards - repeat_penalty * torch.tensor([f == "repeat" for f in finish], dtype=torch.float32)
    return ScoredBatch(rewards, correct, lens, group, [r.error for r in results if r.error])
