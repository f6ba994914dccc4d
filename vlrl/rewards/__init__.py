"""Rewards. ``REWARDS.build(name, **kwargs)`` gives a function (response text, sample) -> RewardResult."""

from vlrl.rewards.base import REWARDS, RewardBuilder, RewardFn, RewardResult
from vlrl.rewards import critic as _critic  # noqa: F401  (registers "critic")
from vlrl.rewards import match as _match  # noqa: F401  (registers "exact_match")
from vlrl.rewards import router as _router  # noqa: F401  (registers "router")
from vlrl.rewards import steps as _steps  # noqa: F401  (registers "math_steps")
from vlrl.rewards import verify as _verify  # noqa: F401  (registers "math")
from vlrl.rewards.config import RewardConfig, verifier_config
from vlrl.rewards.verify import AnswerVerifier

__all__ = ["REWARDS", "AnswerVerifier", "RewardBuilder", "RewardConfig", "RewardFn", "RewardResult", "verifier_config"]
