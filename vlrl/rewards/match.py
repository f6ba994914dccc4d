"""``exact_match``: the extracted final answer equals the reference after normalisation."""

from __future__ import annotations

from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult
from vlrl.rewards.extract import extract_answer


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, drop trailing punctuation and surrounding $...$."""
    t = " ".join(text.strip().lower().split())
    return t.strip("$").rstrip(".!").strip()


@REWARDS.register("exact_match")
def exact_match(response: str, sample: Any) -> RewardResult:
    if sample.answer is None:
        return RewardResult(0.0, error=f"sample '{sample.id}' has no reference answer")
    got = extract_answer(response)
    if got is None:
        return RewardResult(0.0, None)
    return RewardResult(float(normalize(got) == normalize(sample.answer)), got)
