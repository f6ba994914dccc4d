"""Long2short training data from n sampled responses per prompt (k1.5 §2.4).

- Shortest rejection sampling: per prompt, the shortest correct response becomes an SFT target;
  prompts with no correct response are skipped (``select="all"``: every correct response, ReST).
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


def shortest_rs_samples(records: Sequence[PromptRecord], samples: Sequence[Sample], select: str = "shortest"
                        ) -> list[Sample]:
    """SFT samples in prompt order: per prompt its shortest correct response (``select="shortest"``, k1.5's
    long2short), or every correct response (``"all"``: rejection-sampling fine-tuning as ReST / k1.5's
    RL baseline, which keeps the lengths the model writes)."""
    if select not in ("shortest", "all"):
        raise ValueError(f"shortest_rs.select '{select}' is not 'shortest' or 'all'")
    by_id = {s.id: s for s in samples}
    out = []
    for r in records:
        best = shortest_correct(r)
        picks = [] if best is None else [best] if select == "shortest" else [i for i, c in enumerate(r.correct) if c]
        for i in picks:
            s = by_id[r.id]
            out.append(dataclasses.replace(s, response=r.responses[i], meta={**s.meta, "source_length": r.lengths[i]}))
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
