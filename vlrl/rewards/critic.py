"""``critic``: a vision-language model judges free-form answers (k1.5's chain-of-thought reward model).

The critic reads the question (with its images), the reference answer and the response, reasons, and ends
with a JSON verdict ``{"correct": true}`` / ``{"correct": false}``. No verdict is an error (counted,
reported), not a silent 0. Any saved vlrl model can be the critic: ``REWARDS.build("critic", model=DIR)``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult

CRITIC_PROMPT = (
    "Grade the response.\nQuestion: {question}\nReference answer: {answer}\nResponse: {response}\n"
    "Think step by step about whether the response's final answer matches the reference, then end with one "
    'line of JSON: {{"correct": true}} or {{"correct": false}}.'
)
_JSON = re.compile(r"\{[^{}]*\}")


def parse_verdict(text: str) -> bool | None:
    """The ``correct`` field of the last JSON object in ``text`` that has one; None if there is none."""
    for blob in reversed(_JSON.findall(text)):
        try:
            value = json.loads(blob).get("correct")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, bool):
            return value
    return None


class CriticReward:
    """Args: model: a saved model directory or a ``Predictor``; generation settings for the critique."""

    def __init__(self, model: Any, max_new_tokens: int = 256, device: str | None = None) -> None:
        if isinstance(model, str):
            from vlrl.inference import Predictor

            model = Predictor.load(model, device=device)
        self.predictor, self.max_new_tokens = model, max_new_tokens
        self.stats: Counter = Counter()

    def __call__(self, response: str, sample: Any) -> RewardResult:
        self.stats["calls"] += 1
        prompt = CRITIC_PROMPT.format(question=sample.question or "", answer=sample.answer or "(none given)",
                                      response=response)
        critique = self.predictor.answer(prompt, images=list(sample.images), max_new_tokens=self.max_new_tokens)
        verdict = parse_verdict(critique)
        if verdict is None:
            self.stats["no_verdict"] += 1
            return RewardResult(0.0, None, error=f"sample '{sample.id}': the critic gave no JSON verdict")
        return RewardResult(float(verdict), "correct" if verdict else "incorrect")


@REWARDS.register("critic")
def build_critic(**kwargs: Any) -> CriticReward:
    return CriticReward(**kwargs)
