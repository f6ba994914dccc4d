"""``vlrl data inspect SOURCE``: what a source resolves to before anything trains on it.

Prints the resolved column map, the row count of every split (and which one is used), the modality
counts, a few decoded rows, and every row that would be skipped with the reason. With a model directory,
rows are also checked against its processor (image tags, prompt length), as the stages do at load.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from vlrl.data.records import LoadReport, load_samples, validate_samples
from vlrl.types import Sample


def _describe(s: Sample) -> dict:
    from processors.image import load_image

    sizes = []
    for src in s.images:
        im = load_image(src, sample_id=s.id)
        sizes.append(f"{im.width}x{im.height}")
    row = {"id": s.id, "modality": s.modality, "domain": s.domain, "difficulty": s.difficulty,
           "question": s.question if s.question is not None else s.messages, "answer": s.answer,
           "images": sizes}
    row.update({k: s.meta[k] for k in ("choices", "answers", "rel_tol", "abs_tol") if k in s.meta})
    return row


def inspect_source(source: Any, rows: int = 3, model: str | None = None) -> dict:
    """A JSON-able summary of ``source`` (any form ``data.sources`` takes).

    Raises:
        SourceError: the strict cases (missing split or column, uncovered image columns, ...).
    """
    from vlrl.data.mapping import resolve_source
    from vlrl.data.sources import parse_source

    out: dict[str, Any] = {"source": source}
    spec = parse_source(source)
    if spec is not None:  # the load below opens it again: datasets memory-maps its arrow cache, so cheaply
        r = resolve_source(spec)
        out.update(adapter=spec.adapter, split=r.opened.split, splits=r.opened.splits, columns=r.cmap.fields,
                   ignored=r.cmap.ignored, meta_columns=r.cmap.meta, where=spec.where, limit=spec.limit)
    report = LoadReport()
    samples = load_samples(spec if spec is not None else source, "skip", report)
    if model is not None:
        from processors import MultimodalProcessor

        samples = validate_samples(samples, MultimodalProcessor.from_pretrained(model), str(source), "skip", report)
    out.update(loaded=len(samples), modalities=dict(Counter(s.modality for s in samples)),
               domains=dict(Counter(s.domain for s in samples)), skipped=report.skipped,
               rows=[_describe(s) for s in samples[:rows]])
    return out


def format_inspection(info: dict) -> str:
    """The human-readable form ``vlrl data inspect`` prints."""
    lines = [f"source   {info['source']}"]
    if "split" in info:
        splits = ", ".join(f"{k} {n}" + (" <- used" if k == info["split"] else "") for k, n in info["splits"].items())
        lines += [f"adapter  {info['adapter'] or '-'}", f"splits   {splits}",
                  "columns  " + ", ".join(f"{f} <- {c}" for f, c in info["columns"].items()),
                  f"ignored  {info['ignored'] or '-'}", f"to meta  {info['meta_columns'] or '-'}"]
        if info["where"] or info["limit"]:
            lines.append(f"filter   where {info['where'] or '-'}, limit {info['limit'] or '-'}")
    mods = ", ".join(f"{m} {n}" for m, n in sorted(info["modalities"].items()))
    lines.append(f"loaded   {info['loaded']} samples ({mods or 'none'}); domains {info['domains']}")
    lines.append(f"skipped  {len(info['skipped'])}" + "".join(f"\n  {r}" for r in info["skipped"][:20]))
    for r in info["rows"]:
        lines.append("row      " + json.dumps(r, ensure_ascii=False, default=str)[:600])
    return "\n".join(lines)
