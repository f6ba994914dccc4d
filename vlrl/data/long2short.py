"""Long2short training data from n sampled responses per prompt (k1.5 §2.4).

- Shortest rejection sampling: per prompt, the shortest correct response becomes an SFT target;
  prompts with no correct response are skipped.
- DPO pairs: chosen = the shortest correct response; rejected = wrong responses and correct ones at
  least ``ratio`` (default 1.5) times longer than the chosen; at most ``pairs_per_prompt`` pairs, the
  longest rejected candidates first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

from vlrl.types import PromptRecord, Sample


@dataclass
class Pair:
    sample: Sample
    chosen: str
    rejected: str
    chosen_len: int
    rejected_len: int
    rejected_correct: bool


def shortest_correct(record: PromptRecord) -> int | None:
    """Index of the shortest correct response (the first one on ties), or None if none is correct."""
    ok = [i for i, c in enumerate(record.correct) if c]
    return min(ok, key=lambda i: (record.lengths[i], i)) if ok else None


def shortest_rs_samples(records: Sequence[PromptRecord], samples: Sequence[Sample]) -> list[Sample]:
    """SFT samples (the prompt with ``response`` = its shortest correct response), in prompt order."""
    by_id = {s.id: s for s in samples}
    out = []
    for r in records:
        best = shortest_correct(r)
        if best is not None:
            s = by_id[r.id]
            out.append(dataclasses.replace(s, response=r.responses[best],
                                           meta={**s.meta, "source_length": r.lengths[best]}))
    return out


def dpo_pairs(records: Sequence[PromptRecord], samples: Sequence[Sample], ratio: float = 1.5,
              pairs_per_prompt: int = 2) -> list[Pair]:
    """Preference pairs as in k1.5: (shortest correct, wrong or >= ratio x longer correct)."""
    by_id = {s.id: s for s in samples}
    pairs = []
    for r in records:
        best = shortest_correct(r)
        if best is None:
            continue
        cands = [i for i in range(len(r.correct)) if i != best and
                 (not r.correct[i] or r.lengths[i] >= ratio * r.lengths[best])]
        cands.sort(key=lambda i: (-r.lengths[i], i))
        for i in cands[:pairs_per_prompt]:
            pairs.append(Pair(by_id[r.id], r.responses[best], r.responses[i], r.lengths[best], r.lengths[i],
                              r.correct[i]))
    return pairs
