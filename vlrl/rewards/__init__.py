"""Rewards. REWARDS maps a name to a reward function (response text, sample) -> RewardResult."""

from vlrl.rewards.base import REWARDS, RewardFn, RewardResult
from vlrl.rewards import match as _match  # noqa: F401  (registers "exact_match")

__all__ = ["REWARDS", "RewardFn", "RewardResult"]
