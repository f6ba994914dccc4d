"""``exact_match``: the extracted final answer equals the reference after normalisation (no numbers, no
symbols: for string answers such as colours or names)."""

from __future__ import annotations

from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult
from vlrl.rewards.extract import extract_answer
from vlrl.rewards.verify import normalize


class ExactMatch:
    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = pattern

    def __call__(self, response: str, sample: Any) -> RewardResult:
        if sample.answer is None:
            return RewardResult(0.0, error=f"sample '{sample.id}' has no reference answer")
        got = extract_answer(response, self.pattern)
        if got is None:
            return RewardResult(0.0, None)
        return RewardResult(float(normalize(got) == normalize(sample.answer)), got)


@REWARDS.register("exact_match")
def build_exact_match(**kwargs: Any) -> ExactMatch:
    return ExactMatch(**kwargs)
