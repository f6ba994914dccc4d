"""The reward a stage trains and evaluates with: a REWARDS key and its keyword arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from vlrl.rewards.base import REWARDS, RewardFn


@dataclass
class RewardConfig:
    name: str = "math"
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def build(self) -> RewardFn:
        """The registered reward function ``name`` built with ``kwargs``."""
        return REWARDS.build(self.name, **self.kwargs)


def verifier_config() -> RewardConfig:
    """The default of the training stages: the math verifier without symbolic equivalence (exact and
    numeric matching; the tiny tasks' answers are integers)."""
    return RewardConfig(kwargs={"symbolic": False})
