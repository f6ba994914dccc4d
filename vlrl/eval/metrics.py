"""Pure evaluation metrics: pass@k, maj@k, token statistics, grouped summaries, the modality gap."""

from __future__ import annotations

from collections import Counter, defaultdict
from math import comb
from typing import Iterable

import numpy as np

from vlrl.types import PromptRecord  # noqa: F401  (re-exported: the record the metrics read)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n - c, k) / C(n, k), the chance that at least one of k
    responses drawn without replacement from the n (c of them correct) is correct."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(answers: list[str | None], correct: list[bool], k: int) -> bool:
    """maj@k: the most frequent answer among the first k responses (ties: the earliest) is correct.
    Responses without an answer do not vote; if none voted, the prompt counts as wrong."""
    votes = Counter(a for a in answers[:k] if a is not None)
    if not votes:
        return False
    top = max(votes.values())
    winner = next(a for a in answers[:k] if a is not None and votes[a] == top)
    return any(c for a, c in zip(answers[:k], correct[:k]) if a == winner)


def summarize(records: list[PromptRecord], ks: Iterable[int] = (1,)) -> dict:
    """Metrics over a set of prompts: pass@1 is the mean over all n responses of each prompt."""
    if not records:
        return {"prompts": 0}
    n = min(len(r.correct) for r in records)
    lengths = np.array([x for r in records for x in r.lengths], dtype=float)
    out = {
        "prompts": len(records),
        "responses": int(sum(len(r.correct) for r in records)),
        "pass@1": float(np.mean([np.mean(r.correct) for r in records])),
        "mean_tokens": float(lengths.mean()),
        "p95_tokens": float(np.percentile(lengths, 95)),
        "no_answer_rate": float(np.mean([a is None for r in records for a in r.answers])),
        "verifier_errors": int(sum(e is not None for r in records for e in r.errors)),
    }
    for k in sorted(set(ks)):
        if 1 < k <= n:
            out[f"pass@{k}"] = float(np.mean([pass_at_k(len(r.correct), sum(r.correct), k) for r in records]))
            out[f"maj@{k}"] = float(np.mean([majority_correct(r.answers, r.correct, k) for r in records]))
    return out


def grouped(records: list[PromptRecord], key: str, ks: Iterable[int]) -> dict:
    groups: dict[str, list[PromptRecord]] = defaultdict(list)
    for r in records:
        groups[str(getattr(r, key))].append(r)
    return {g: summarize(rs, ks) for g, rs in sorted(groups.items())}


def modality_gap(records: list[PromptRecord]) -> dict:
    """Pass@1 of the text version minus the text-rendered (image) version, over pairs that have both."""
    by_pair: dict[str, dict[str, PromptRecord]] = defaultdict(dict)
    for r in records:
        if r.pair_id is not None:
            by_pair[r.pair_id][r.modality] = r
    pairs = [(p["text"], p["text_rendered"]) for p in by_pair.values() if "text" in p and "text_rendered" in p]
    if not pairs:
        return {"pairs": 0}
    text = float(np.mean([np.mean(t.correct) for t, _ in pairs]))
    rendered = float(np.mean([np.mean(i.correct) for _, i in pairs]))
    return {"pairs": len(pairs), "text_pass@1": text, "rendered_pass@1": rendered, "gap": text - rendered}


def full_report(records: list[PromptRecord], ks: Iterable[int] = (1,)) -> dict:
    ks = list(ks)
    return {
        "overall": summarize(records, ks),
        "by_modality": grouped(records, "modality", ks),
        "by_domain": grouped(records, "domain", ks),
        "by_difficulty": grouped(records, "difficulty", ks),
        "modality_gap": modality_gap(records),
    }


def answer_modes(records: list[PromptRecord], direct_prefix: str = "Answer:") -> dict:
    """Per modality, how responses answer: ``direct`` (the response starts with ``direct_prefix``: no
    reasoning before the answer) or ``reasoned``; the share of direct responses and each mode's accuracy
    (None where a mode has no response). Shows a policy trading reasoning for guessing, which pass@1
    alone hides."""
    counts: dict = defaultdict(lambda: {"direct": [0, 0], "reasoned": [0, 0]})  # mode -> [responses, correct]
    for r in records:
        for text, ok in zip(r.responses, r.correct):
            mode = "direct" if text.lstrip().startswith(direct_prefix) else "reasoned"
            counts[r.modality][mode][0] += 1
            counts[r.modality][mode][1] += int(ok)
    out = {}
    for modality, c in sorted(counts.items()):
        total = c["direct"][0] + c["reasoned"][0]
        out[modality] = {"responses": total, "direct_share": round(c["direct"][0] / total, 3),
                         **{f"{m}_accuracy": round(c[m][1] / c[m][0], 3) if c[m][0] else None for m in c}}
    return out
