"""The reward a stage trains and evaluates with: a REWARDS key, its keyword arguments and how its
failures are handled (``vlrl.rewards.guard``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from vlrl.rewards.base import REWARDS
from vlrl.rewards.guard import GuardedReward


@dataclass
class RewardConfig:
    """``name``: a REWARDS key (built-in or an entry-point plug-in); ``kwargs``: its builder's arguments;
    ``timeout_s``: a call that takes longer is a verifier error; ``on_error``: ``count`` (a raise or a
    timeout scores 0 and is counted and reported) or ``stop`` (the run stops, naming the sample)."""

    name: str = "math"
    kwargs: Dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    on_error: str = "count"

    def build(self) -> GuardedReward:
        """The registered reward function ``name`` built with ``kwargs``, guarded."""
        return GuardedReward(REWARDS.build(self.name, **self.kwargs), self.name, self.timeout_s, self.on_error)


def verifier_config() -> RewardConfig:
    """The default of the training stages: the math verifier without symbolic equivalence (exact and
    numeric matching; the tiny tasks' answers are integers)."""
    return RewardConfig(kwargs={"symbolic": False})
