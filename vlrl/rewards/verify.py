"""Answer verification: is the final answer in a response equivalent to the reference?

In order, cheapest first:
1. normalised string equality ("Paris." == "paris");
2. numeric equality within tolerance, after reading integers, decimals, "1,000", fractions "1/2",
   ``\\frac{1}{2}``, percentages and trailing units ("3 cm");
3. symbolic equality through math-verify (sympy), in a worker process under a wall-clock timeout that
   works in any thread (see ``timeout.py``).
A timeout or crash of the symbolic check is not a wrong answer: it is counted in ``stats`` and returned
as ``RewardResult.error`` for the caller to report.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult
from vlrl.rewards.extract import extract_answer
from vlrl.rewards.timeout import CallTimeout, ProcessTimeout

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_FRAC = re.compile(rf"^({_NUM})\s*/\s*({_NUM})$")
_TEX_FRAC = re.compile(rf"^([-+]?)\\[dt]?frac\{{({_NUM})\}}\{{({_NUM})\}}$")
_UNIT = re.compile(rf"^({_NUM})\s*(?:[a-zA-Z°]+\.?|\\?%)$")


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace, strip $...$, \\text{}, and trailing punctuation."""
    t = re.sub(r"\\text\{([^}]*)\}", r"\1", text.strip())
    t = " ".join(t.lower().split()).strip("$ ")
    return t.rstrip(".!;,").strip()


def to_number(text: str) -> float | None:
    """The number ``text`` denotes, or None. Percentages are read as their face value ("50%" -> 50)."""
    t = normalize(text).replace("\\!", "").replace("{,}", "")
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # thousands separators
    if re.fullmatch(_NUM, t):
        return float(t)
    if m := _FRAC.match(t):
        den = float(m[2])
        return float(m[1]) / den if den else None
    if m := _TEX_FRAC.match(t):
        den = float(m[3])
        return (-1 if m[1] == "-" else 1) * float(m[2]) / den if den else None
    if m := _UNIT.match(t):
        return float(m[1])
    return None


def _symbolic_equal(pred: str, ref: str) -> bool:
    """math-verify's check with its own (signal-based) timeouts off: ours is the worker process."""
    from math_verify import parse, verify

    def p(s: str):
        return parse(s if "$" in s or "\\boxed" in s else f"${s}$", parsing_timeout=None)

    gold, target = p(ref), p(pred)
    return bool(gold and target and verify(gold, target, timeout_seconds=None))


class AnswerVerifier:
    """REWARDS ``math``: 1.0 if the extracted answer is equivalent to ``sample.answer``, else 0.0.

    Args:
        pattern: a regex whose first group is the answer (default: \\boxed{}, then "Answer:").
        rel_tol / abs_tol: numeric tolerance.
        symbolic: fall back to math-verify for non-numeric answers.
        timeout_s: wall-clock limit of one symbolic check.
    """

    def __init__(self, pattern: str | None = None, rel_tol: float = 1e-4, abs_tol: float = 1e-8,
                 symbolic: bool = True, timeout_s: float = 5.0) -> None:
        self.pattern, self.rel_tol, self.abs_tol, self.symbolic = pattern, rel_tol, abs_tol, symbolic
        self._runner = ProcessTimeout(timeout_s)
        self.stats: Counter = Counter()

    def equivalent(self, pred: str, ref: str) -> bool:
        """Raises CallTimeout or another exception when the symbolic check fails to decide."""
        if normalize(pred) == normalize(ref):
            return True
        a, b = to_number(pred), to_number(ref)
        if a is not None and b is not None:
            return math.isclose(a, b, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        if not self.symbolic:
            return False
        return bool(self._runner.run(_symbolic_equal, pred, ref))

    def __call__(self, response: str, sample: Any) -> RewardResult:
        self.stats["calls"] += 1
        if sample.answer is None:
            self.stats["errors"] += 1
            return RewardResult(0.0, error=f"sample '{sample.id}' has no reference answer")
        pred = extract_answer(response, self.pattern)
        if pred is None:
            self.stats["no_answer"] += 1
            return RewardResult(0.0, None)
        try:
            ok = self.equivalent(pred, sample.answer)
        except CallTimeout as e:
            self.stats["timeouts"] += 1
            return RewardResult(0.0, pred, error=f"sample '{sample.id}': verifying {pred[:80]!r} timed out ({e})")
        except Exception as e:  # a crash in sympy must not kill a run; it is counted and reported
            self.stats["errors"] += 1
            return RewardResult(0.0, pred, error=f"sample '{sample.id}': verifier failed: {type(e).__name__}: {e}")
        self.stats["correct"] += ok
        return RewardResult(float(ok), pred)

    def close(self) -> None:
        self._runner.close()


@REWARDS.register("math")
def build_math(**kwargs: Any) -> AnswerVerifier:
    return AnswerVerifier(**kwargs)
