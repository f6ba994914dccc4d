"""The REWARDS registry and its protocol.

A reward function scores one response to one sample. It returns a :class:`RewardResult` whose ``reward`` is
a float (1.0 / 0.0 for verifiable answers) and ``error`` says why it could not score (a failure is counted
and reported by the caller, never silently turned into 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from vlrl.registry import Registry


@dataclass
class RewardResult:
    reward: float
    extracted: str | None = None
    error: str | None = None


class RewardFn(Protocol):
    def __call__(self, response: str, sample: Any) -> RewardResult: ...


REWARDS: Registry[RewardFn] = Registry("reward", "vlrl.rewards")
