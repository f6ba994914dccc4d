"""Evaluability filters (k1.5 §2.1): questions whose answers can be guessed or not checked are removed.

Rule filters look at the question and its answer type (``tags.answer_type``): multiple-choice,
true/false and proof-style questions, and prompts without a verifiable reference answer. The
model-based filters (easy-to-hack, trivial) are decisions on pass rates measured in ``difficulty.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlrl.curation.tags import _LETTER_OPTIONS, _question, answer_type
from vlrl.types import Sample

_WHICH_OF = re.compile(r"\bwhich of the following\b|\bchoose one\b|\bselect one\b", re.IGNORECASE)
_TF_PHRASE = re.compile(r"\btrue or false\b|\bt/f\b|\banswer yes or no\b|\byes or no\b", re.IGNORECASE)


@dataclass
class RuleFilterConfig:
    drop_choice: bool = True
    drop_true_false: bool = True
    drop_proof: bool = True
    no_reference: str = "drop"  # drop | critic (keep, routed to the critic reward) | keep


def is_choice(sample: Sample) -> bool:
    """Lettered options, "which of the following", or an answer that is one side of "X or Y?"."""
    q = _question(sample)
    if (sample.meta or {}).get("choices"):  # a dataset's options column (vlrl.data.mapping)
        return True
    return answer_type(sample) == "choice" or bool(_WHICH_OF.search(q)) or len(_LETTER_OPTIONS.findall(q)) >= 2


def is_true_false(sample: Sample) -> bool:
    """A boolean answer, or a true/false / yes-no phrase when the answer is not a number ("What is 2+2?
    It is true that ..." with answer 4 is not true/false)."""
    kind = answer_type(sample)
    if kind == "boolean":
        return True
    return bool(_TF_PHRASE.search(_question(sample))) and kind not in ("integer", "number", "expression")


def is_proof(sample: Sample) -> bool:
    return answer_type(sample) == "proof"


def rule_reasons(sample: Sample, cfg: RuleFilterConfig) -> list[str]:
    """Why the rule filters remove ``sample`` (empty = keep). A prompt without a reference answer under
    ``no_reference: critic`` is kept and marked ``meta["reward"] = "critic"``."""
    reasons = []
    if cfg.drop_proof and is_proof(sample):
        reasons.append("proof")
    if cfg.drop_choice and is_choice(sample):
        reasons.append("multiple_choice")
    if cfg.drop_true_false and is_true_false(sample):
        reasons.append("true_false")
    if not reasons and not (sample.answer or "").strip():
        if cfg.no_reference == "drop":
            reasons.append("no_reference")
        elif cfg.no_reference == "critic":
            sample.meta["reward"] = "critic"
        elif cfg.no_reference != "keep":
            raise ValueError(f"filters.no_reference '{cfg.no_reference}' is not drop, critic or keep")
    return reasons


def easy_to_hack(guess_correct: list[bool]) -> bool:
    """k1.5: the prompt is too easy to hack if any of the N no-reasoning guesses is correct."""
    return any(guess_correct)
