"""Final-answer extraction from a model response."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\{")
_ANSWER = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*(.+)", re.IGNORECASE)


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, with nested braces."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i, depth = starts[-1], 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def extract_answer(text: str, pattern: str | None = None) -> str | None:
    """The final answer in ``text``: a custom regex's first group, else the last ``\\boxed{}``, else the
    text after the last "Answer:" (up to the end of its line, trailing period removed). None if absent."""
    if pattern is not None:
        found = re.findall(pattern, text)
        return found[-1].strip() if found else None
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    found = _ANSWER.findall(text)
    if not found:
        return None
    lines = found[-1].strip().splitlines()
    ans = lines[0].strip().rstrip(".").strip() if lines else ""
    return ans or None
