"""Balanced selection: a target number of prompts stratified by domain x difficulty x modality.

Each stratum key has proportions over its values (given in the config, or equal over the values present
in the pool); a cell's quota is ``target * prod(proportion of its value per key)``, rounded by largest
remainder so the quotas sum to the target. A cell with fewer prompts than its quota gives what it has and
the shortfall is reported; with ``fill`` the missing count is taken from cells with prompts to spare.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from typing import Callable, Mapping, Sequence

from vlrl.types import Sample


def stratum_value(sample: Sample, key: str) -> str:
    """The value of stratum ``key`` (a tag name, or "difficulty" / "modality" / "domain") of a sample."""
    tags = sample.meta.get("tags", {})
    if key in tags:
        return str(tags[key])
    if key == "difficulty":
        return str(sample.difficulty)
    return str(getattr(sample, key, sample.meta.get(key)))


def quotas(target: int, values: Mapping[str, Sequence[str]], proportions: Mapping[str, Mapping[str, float]]
           ) -> dict[tuple, int]:
    """Integer quota per cell (a tuple of values, one per key) summing to ``target``."""
    shares = {}
    for key, vals in values.items():
        given = proportions.get(key)
        p = {v: float(given.get(v, 0.0)) for v in vals} if given else {v: 1.0 for v in vals}
        total = sum(p.values())
        if total <= 0:
            raise ValueError(f"selection.proportions.{key}: no positive share for the values present {list(vals)}")
        shares[key] = {v: w / total for v, w in p.items()}
    cells = list(itertools.product(*values.values()))
    exact = {c: target * math.prod(shares[k][v] for k, v in zip(values, c)) for c in cells}
    out = {c: int(math.floor(x + 1e-9)) for c, x in exact.items()}
    for c in sorted(cells, key=lambda c: -(exact[c] - out[c]))[: target - sum(out.values())]:
        out[c] += 1
    return out


def balanced_select(samples: Sequence[Sample], target: int, by: Sequence[str],
                    proportions: Mapping[str, Mapping[str, float]] | None = None, fill: bool = False,
                    seed: int = 0, value: Callable[[Sample, str], str] = stratum_value) -> tuple[list[Sample], dict]:
    """Pick ``target`` samples stratified by the keys ``by``; returns (selected, report). The report has,
    per cell, its quota, how many the pool had and how many were taken, and the total shortfall."""
    proportions = proportions or {}
    rng = random.Random(seed)
    cells: dict[tuple, list[Sample]] = defaultdict(list)
    for s in samples:
        cells[tuple(value(s, k) for k in by)].append(s)
    values = {k: sorted({c[i] for c in cells} | set(proportions.get(k, {}))) for i, k in enumerate(by)}
    quota = quotas(min(target, len(samples)) if fill else target, values, proportions)
    chosen: dict[tuple, list[Sample]] = {}
    for c, q in quota.items():
        pool = list(cells.get(c, []))
        rng.shuffle(pool)
        cells[c], chosen[c] = pool, pool[:q]
    missing = sum(q - len(chosen[c]) for c, q in quota.items())
    if fill and missing > 0:  # take the rest from the cells with spare prompts, largest spare first
        while missing > 0:
            spare = [c for c in quota if len(cells[c]) > len(chosen[c])]
            if not spare:
                break
            c = max(spare, key=lambda c: (len(cells[c]) - len(chosen[c]), c))
            chosen[c].append(cells[c][len(chosen[c])])
            missing -= 1
    table = [{**dict(zip(by, c)), "quota": q, "available": len(cells.get(c, [])), "selected": len(chosen[c])}
             for c, q in quota.items()]
    report = {"target": target, "by": list(by), "cells": table,
              "selected": sum(len(v) for v in chosen.values()),
              "shortfall": sum(max(0, r["quota"] - r["available"]) for r in table),
              "short_cells": [r for r in table if r["available"] < r["quota"]]}
    selected = [s for c in quota for s in chosen[c]]
    return selected, report
