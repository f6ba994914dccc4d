"""``math_steps``: the ``math`` verifier plus a check of the arithmetic the response states.

A final answer earns its reward only if every integer equation written in the response holds
(``a + b = c``, ``1 + 0 + 1 = 2``, ``a - b * c = d``, ``a x b = c``), and every negation ``a + b is not c`` is
true.
A false equation the model retracts itself (a later ``a + b is not c`` for the same ``a + b`` and ``c``:
a caught slip) does not count. A correct answer reached through a false step gets ``inconsistent_reward``.

Why: outcome-only rewards reinforce right answers reached for wrong reasons. A small model's sampled chains
often state a false equation on the way to a right answer, which teacher traces never do (the tiny model's
rates are in docs/results.md); RL on the plain answer check rewards those samples as much as sound ones.

    reward: {name: math_steps, kwargs: {symbolic: false, inconsistent_reward: 0.0}}
"""

from __future__ import annotations

import re
from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult
from vlrl.rewards.verify import AnswerVerifier

_END = r"(?!\d|\.\d)"  # a whole integer: not followed by more digits or decimals (a full stop is fine)
_EXPR = r"(?<![\d.])(\d+(?:\s*[-+*x×]\s*\d+)+)"  # integers joined by + - * x, e.g. "1 + 0 + 1"
_EQ = re.compile(_EXPR + r"\s*=\s*(-?\d+)" + _END)
_NOT = re.compile(_EXPR + r"\s+is not\s+(-?\d+)" + _END)


def _value(expr: str) -> int:
    """Value of integers joined by + - * (x and × mean *), with the usual precedence."""
    terms = re.findall(r"[-+*x×]|\d+", expr)
    total, sign, prod = 0, 1, int(terms[0])
    for op, num in zip(terms[1::2], terms[2::2]):
        if op in "*x×":
            prod *= int(num)
        else:
            total, sign, prod = total + sign * prod, (1 if op == "+" else -1), int(num)
    return total + sign * prod


def _same(expr: str) -> str:
    """A regex for ``expr`` with any spacing."""
    return r"\s*".join(re.escape(t) for t in re.findall(r"[-+*x×]|\d+", expr))


def false_steps(text: str) -> list[str]:
    """The stated arithmetic of ``text`` that does not hold: equations ``expr = c`` with a wrong c that are
    not retracted later by ``expr is not c``, and negations ``expr is not c`` whose c is right. ``expr``
    is integers joined by + - * (x, ×); parenthesised expressions are not checked."""
    bad = []
    for m in _EQ.finditer(text):
        expr, c = m.groups()
        if _value(expr) == int(c):
            continue
        retract = rf"(?<![\d.]){_same(expr)}\s+is not\s+{re.escape(c)}{_END}"
        if not re.search(retract, text[m.end():]):
            bad.append(m.group(0))
    bad += [m.group(0) for m in _NOT.finditer(text) if _value(m.group(1)) == int(m.group(2))]
    return bad


class StepCheckedVerifier:
    """(response, sample) -> RewardResult: the answer check of ``AnswerVerifier``, then ``false_steps``."""

    def __init__(self, inconsistent_reward: float = 0.0, **verifier_kwargs: Any) -> None:
        self.verifier = AnswerVerifier(**verifier_kwargs)
        self.inconsistent_reward = inconsistent_reward
        self.stats = self.verifier.stats
        self.stats.setdefault("false_steps", 0)

    def __call__(self, response: str, sample: Any) -> RewardResult:
        result = self.verifier(response, sample)
        if result.reward > 0 and result.error is None and false_steps(response):
            self.stats["false_steps"] += 1
            return RewardResult(self.inconsistent_reward, result.extracted)
        return result

    def close(self) -> None:
        self.verifier.close()


@REWARDS.register("math_steps")
def build_math_steps(**kwargs: Any) -> StepCheckedVerifier:
    return StepCheckedVerifier(**kwargs)
