"""The Kimi k1.5 length reward (reference §3), computed within each prompt's group of k responses.

    lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)      (min / max over the prompt's k responses)
    len_reward_i = lambda_i            if response i is correct
                 = min(0, lambda_i)    if it is wrong
    len_reward_i = 0 for all i         if max_len == min_len

It is added to the correctness reward with a weight that is 0 during a warm-up ("standard policy
optimization without length penalty") and constant afterwards.
"""

from __future__ import annotations

import torch


def length_reward(lengths: torch.Tensor, correct: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Args: lengths (B,) response lengths; correct (B,) bool; group (B,) prompt ids. Returns (B,) rewards."""
    lengths = lengths.to(torch.float64)
    out = torch.zeros_like(lengths)
    for g in torch.unique(group):
        idx = group == g
        lo, hi = lengths[idx].min(), lengths[idx].max()
        if hi == lo:
            continue  # all lengths equal: no length reward
        lam = 0.5 - (lengths[idx] - lo) / (hi - lo)
        out[idx] = torch.where(correct[idx].bool(), lam, lam.clamp(max=0.0))
    return out.to(torch.float32)


def length_penalty_weight(iteration: int, warmup_iterations: int, weight: float) -> float:
    """0 for the first ``warmup_iterations`` iterations, then ``weight`` (k1.5's step schedule)."""
    return 0.0 if iteration < warmup_iterations else weight
