"""Coverage tags (k1.5 §2.1): domain / discipline, modality and answer type of each prompt.

The rule-based tagger works out of the box (keyword rules from the config); a model-based tagger asks a
given model to pick one of the configured domains. Tags already present in the data are kept: a sample
whose ``domain`` is set (not "general") keeps it, and ``meta["tags"]`` entries are never overwritten.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from vlrl.types import Sample

ANSWER_TYPES = ("integer", "number", "expression", "string", "choice", "boolean", "proof", "none")

DEFAULT_DOMAINS: dict[str, list[str]] = {
    "counting": ["how many shapes", "how many", "number of", "count"],
    "spatial": ["left of", "right of", "above", "below", "row", "column"],
    "arithmetic": ["what is", "+", "*", " - ", "sum", "product", "difference", "solve the problem"],
    "algebra": ["solve for", "equation", "variable", "x ="],
    "geometry": ["triangle", "angle", "area", "perimeter", "circle", "radius"],
    "number_theory": ["prime", "divisible", "even", "odd", "remainder"],
}
DEFAULT_DISCIPLINES: dict[str, list[str]] = {
    "math": ["arithmetic", "algebra", "geometry", "number_theory"],
    "visual_reasoning": ["counting", "spatial"],
}

_INT = re.compile(r"^[-+]?\d{1,3}(,\d{3})*$|^[-+]?\d+$")
_NUM = re.compile(r"^[-+]?(\d+\.\d*|\.\d+|\d+)(e[-+]?\d+)?%?$|^[-+]?\d+\s*/\s*\d+$", re.IGNORECASE)
_EXPR = re.compile(r"[a-z]\s*[\^*/+-]|\\frac|\\sqrt|sqrt\(|\^|\bpi\b", re.IGNORECASE)
_BOOL = {"true", "false", "yes", "no", "t", "f"}
_LETTER_OPTIONS = re.compile(r"(\(\s*[A-Ea-e]\s*\)|(^|\s)[A-E][.)]\s)")
_X_OR_Y = re.compile(r"\b([\w.\-]+)\s*,?\s+or\s+([\w.\-]+)\s*\?\s*$", re.IGNORECASE)
_PROOF = re.compile(r"\b(prove|show that|demonstrate that|proof)\b", re.IGNORECASE)


def _question(sample: Sample) -> str:
    if sample.question is not None:
        return sample.question
    return " ".join(m["content"] for m in sample.messages or [] if m["role"] == "user")


def answer_type(sample: Sample) -> str:
    """One of ``ANSWER_TYPES``, from the reference answer and the question text.

    choice: a lettered answer to a question with lettered options, or the answer is one side of an
    "X or Y?" question ("Which is larger, 3 or 5?" -> "5" is a choice in disguise); boolean: the answer
    is true/false/yes/no (a numeric answer never is, whatever the question says); proof: the question
    asks to prove or show something."""
    q, a = _question(sample), (sample.answer or "").strip()
    if _PROOF.search(q):
        return "proof"
    if not a:
        return "none"
    if a.lower().rstrip(".") in _BOOL:
        return "boolean"
    if re.fullmatch(r"\(?[A-Ea-e]\)?", a) and _LETTER_OPTIONS.search(q):
        return "choice"
    m = _X_OR_Y.search(q)
    if m and a.lower() in (m.group(1).lower(), m.group(2).lower()):
        return "choice"
    if _INT.match(a):
        return "integer"
    if _NUM.match(a):
        return "number"
    if _EXPR.search(a):
        return "expression"
    return "string"


def rule_domain(question: str, domains: Mapping[str, Sequence[str]]) -> str:
    """The domain with the most keyword hits in ``question`` (ties: the first in config order);
    "general" when nothing matches."""
    q = question.lower()
    best, hits = "general", 0
    for name, words in domains.items():
        n = sum(w.lower() in q for w in words)
        if n > hits:
            best, hits = name, n
    return best


def discipline_of(domain: str, disciplines: Mapping[str, Sequence[str]]) -> str:
    for name, members in disciplines.items():
        if domain in members:
            return name
    return "other"


def tag_sample(sample: Sample, domains: Mapping[str, Sequence[str]], disciplines: Mapping[str, Sequence[str]],
               model_domain: str | None = None) -> dict:
    """Set ``meta["tags"]`` = {domain, discipline, modality, answer_type} (existing tags win) and fill
    ``domain`` when it was "general". Returns the tags."""
    tags = dict(sample.meta.get("tags") or {})
    domain = sample.domain if sample.domain and sample.domain != "general" else None
    domain = tags.get("domain") or domain or model_domain or rule_domain(_question(sample), domains)
    tags.setdefault("domain", domain)
    tags.setdefault("discipline", discipline_of(tags["domain"], disciplines))
    tags.setdefault("modality", sample.modality)
    tags.setdefault("answer_type", answer_type(sample))
    sample.domain = tags["domain"]
    sample.meta["tags"] = tags
    return tags


def parse_choice(text: str, options: Sequence[str]) -> str | None:
    """The first of ``options`` named in a model's ``text`` (case-insensitive, whole word), else None."""
    low = text.lower()
    found = [(m.start(), o) for o in options for m in [re.search(rf"\b{re.escape(o.lower())}\b", low)] if m]
    return min(found)[1] if found else None


TAG_PROMPT = "Which topic is this question about? Choose one of: {options}. Reply with the topic only.\nQuestion: {q}"


def model_domains(model, processor, samples: Sequence[Sample], options: Sequence[str], batch_size: int = 32,
                  max_new_tokens: int = 8) -> list[str | None]:
    """Ask ``model`` (greedy) to pick one of ``options`` for each sample (its images included); None where
    its reply names none of them, so the rule tagger decides."""
    import dataclasses

    import torch

    from vlrl.models.generation import SamplingParams, generate_texts

    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    asks = [dataclasses.replace(s, question=TAG_PROMPT.format(options=", ".join(options), q=_question(s)),
                                messages=None, meta={}) for s in samples]
    with torch.no_grad():
        gen = generate_texts(model, processor, asks, params, batch_size=batch_size)
    return [parse_choice(t, options) for t in gen.texts]
