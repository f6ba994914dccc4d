"""Answer verification: is the final answer in a response equivalent to the reference?

In order, cheapest first:
1. normalised string equality ("Paris." == "paris");
2. numeric equality within tolerance, after reading integers, decimals, "1,000", fractions "1/2",
   ``\\frac{1}{2}``, percentages and trailing units ("3 cm");
3. symbolic equality through math-verify (sympy), in a worker process under a wall-clock timeout that
   works in any thread (see ``timeout.py``).
A timeout or crash of the symbolic check is not a wrong answer: it is counted in ``stats`` and returned
as ``RewardResult.error`` for the caller to report.

A sample's ``meta`` can widen what counts (dataset adapters set these): ``choices`` (a multiple-choice
question: its option letter or the option's text are both right), ``answers`` (several right answers,
any one counts), ``rel_tol`` / ``abs_tol`` (this sample's numeric tolerance).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any

from vlrl.rewards.base import REWARDS, RewardResult
from vlrl.rewards.extract import extract_answer
from vlrl.rewards.timeout import CallTimeout, ProcessTimeout

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_FRAC = re.compile(rf"^({_NUM})\s*/\s*({_NUM})$")
_TEX_FRAC = re.compile(rf"^([-+]?)\\[dt]?frac\{{({_NUM})\}}\{{({_NUM})\}}$")
_UNIT = re.compile(rf"^({_NUM})\s*(?:[a-zA-Z°]+\.?|\\?%)$")
# an option letter, alone or leading the option's text: "B", "(B)", "B.", "(b) 145", "B: 145"
_OPTION_LETTER = re.compile(r"(?:\(([A-Za-z])\)|([A-Z])[.:]?)(?:\s+.*)?", re.S)
LETTERS = string.ascii_uppercase


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


def same_value(a: str, b: str, rel_tol: float = 1e-4, abs_tol: float = 1e-8) -> bool:
    """The cheap checks: normalised string equality, else numeric equality within tolerance."""
    if normalize(a) == normalize(b):
        return True
    x, y = to_number(a), to_number(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=rel_tol, abs_tol=abs_tol)


def option_index(text: str, choices: list[str]) -> int | None:
    """Which option ``text`` names: an option's text (:func:`same_value`), else its letter ("B", "(b)",
    "B. 145"); None if neither. ``option_index("(B) 7", ["5", "7"]) == 1``, ``option_index("7", ...) == 1``."""
    for i, c in enumerate(choices):
        if same_value(text, c):
            return i
    m = _OPTION_LETTER.fullmatch(text.strip())
    i = LETTERS.find((m[1] or m[2]).upper()) if m else -1
    return i if 0 <= i < len(choices) else None


def _symbolic_equal(pred: str, ref: str) -> bool:
    """math-verify's check with its own (signal-based) timeouts off: ours is the worker process."""
    from math_verify import parse, verify

    def p(s: str):
        return parse(s if "$" in s or "\\boxed" in s else f"${s}$", parsing_timeout=None)

    gold, target = p(ref), p(pred)
    return bool(gold and target and verify(gold, target, timeout_seconds=None))


def _warm_symbolic() -> None:
    """A fresh worker's imports and first sympy call (about a second, more on a busy machine)."""
    _symbolic_equal("x+x", "2x")


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
        self._runner = ProcessTimeout(timeout_s, warmup=_warm_symbolic)
        self.stats: Counter = Counter()

    def equivalent(self, pred: str, ref: str, rel_tol: float | None = None, abs_tol: float | None = None) -> bool:
        """Raises CallTimeout or another exception when the symbolic check fails to decide."""
        rel = self.rel_tol if rel_tol is None else rel_tol
        tol = self.abs_tol if abs_tol is None else abs_tol
        if normalize(pred) == normalize(ref):
            return True
        a, b = to_number(pred), to_number(ref)
        if a is not None and b is not None:
            return math.isclose(a, b, rel_tol=rel, abs_tol=tol)
        if not self.symbolic:
            return False
        return bool(self._runner.run(_symbolic_equal, pred, ref))

    def matches(self, pred: str, sample: Any) -> bool:
        """``pred`` against the sample's answer, widened by its ``meta`` (choices, answers, tolerances).
        A multiple-choice answer is right if it names the reference option by letter or by text."""
        meta = sample.meta or {}
        refs = list(meta.get("answers") or [sample.answer])
        choices = meta.get("choices")
        if choices:
            want = option_index(sample.answer, choices)
            got = option_index(pred, choices)
            if want is not None and got is not None:
                return got == want
            if want is not None:  # neither a letter nor an option: compare with the option's text
                refs = [choices[want]]
        return any(self.equivalent(pred, r, meta.get("rel_tol"), meta.get("abs_tol")) for r in refs)

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
            ok = self.matches(pred, sample)
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
