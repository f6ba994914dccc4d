"""The REWARDS registry and its protocol.

A REWARDS entry is a *builder*: ``REWARDS.build(name, **kwargs)`` returns a reward function
``fn(response: str, sample) -> RewardResult``. ``reward`` is a float (1.0 / 0.0 for verifiable answers);
``error`` says why the function could not decide (a verifier timeout or crash): the caller counts and
reports it, it is never silently turned into a plain 0.
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


class RewardBuilder(Protocol):
    def __call__(self, **kwargs: Any) -> RewardFn: ...


REWARDS: Registry[RewardBuilder] = Registry("reward", "vlrl.rewards")
