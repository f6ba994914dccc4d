"""Dataset rows -> the record fields :func:`vlrl.data.records.sample_from_row` reads, through a column map.

The steps of one row: take each mapped column; collect its images (a list column, several columns with
empty ones skipped, ``{bytes, path}`` dicts of an undecoded ``datasets.Image``, raw bytes, PIL images, or
paths relative to the dataset), checking that each decodes; let the adapter adjust the record; then the
common answer handling: a list-valued answer keeps all entries (any is right, ``meta.answers``) and
multiple-choice options go into ``meta.choices`` and, unless the question already lists them, into the
prompt through :data:`CHOICES_TEMPLATE`.
"""

from __future__ import annotations

import ast
import io
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vlrl.data.adapters import Adapter, get_adapter
from vlrl.data.sources import (QUESTION_COLUMNS, OpenedSplit, SourceError, SourceSpec, filter_rows,
                               image_like_columns, natural_key, open_split, quiet_datasets, undecoded)

LETTERS = string.ascii_uppercase
# The options of a multiple-choice question, as the model sees them after the question:
#   <question>
#   Options:
#   (A) <first option>
#   (B) <second option>
CHOICES_TEMPLATE = "{question}\nOptions:\n{options}"


def with_choices(question: str, choices: list[str]) -> str:
    """``question`` followed by its lettered options (:data:`CHOICES_TEMPLATE`)."""
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))
    return CHOICES_TEMPLATE.format(question=question, options=options)


@dataclass
class ColumnMap:
    """Resolved: vlrl field -> column (``images`` -> a list of columns), and the columns kept in meta."""

    fields: dict[str, Any]
    ignored: list[str] = field(default_factory=list)
    meta: list[str] = field(default_factory=list)


def _as_list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def resolve_columns(spec: SourceSpec, dataset, adapter: Adapter | None, where: str) -> ColumnMap:
    """The column map for ``dataset``: the adapter's, overridden by the spec's, the rest guessed by name.

    Raises:
        SourceError: a mapped or ignored column is missing; or (strict) two question-like columns are
            unmapped, or image-like columns are not covered by ``images`` / ``ignore``.
    """
    names = dataset.column_names
    cols = {**(adapter.columns if adapter else {}), **spec.columns}
    ignored = [*(adapter.ignore if adapter else ()), *spec.ignore]
    for key, col in [*((f"columns.{f}", c) for f, v in cols.items() for c in _as_list(v)),
                     *(("ignore", c) for c in ignored)]:
        if col not in names:
            raise SourceError(f"{where}: {key} names column '{col}', which the dataset does not have; "
                              f"its columns: {names}")
    if "question" not in cols and "messages" not in cols:
        found = [c for c in QUESTION_COLUMNS if c in names]
        if not found:
            raise SourceError(f"{where}: no question column (looked for {list(QUESTION_COLUMNS)}); map one with "
                              f"columns.question=COLUMN; its columns: {names}")
        if len(found) > 1 and spec.strict:
            raise SourceError(f"{where}: columns {found} could each be the question; map one with "
                              f"columns.question=COLUMN (strict=false takes '{found[0]}')")
        cols["messages" if found[0] == "messages" else "question"] = found[0]
    for f, guesses in (("answer", ("answer",)), ("choices", ("choices", "options")), ("id", ("id",)),
                       ("domain", ("domain",)), ("difficulty", ("difficulty",)), ("response", ("response",)),
                       ("modality", ("modality",)), ("pair_id", ("pair_id",))):
        if f not in cols and (hit := next((g for g in guesses if g in names), None)):
            cols[f] = hit
    like = [c for c in image_like_columns(dataset) if c not in ignored]
    if "images" not in cols and like:
        if len(like) > 1 and spec.strict:
            raise SourceError(f"{where}: several image columns {like}; map them with columns.images=COL[,COL..] "
                              f"(in order) and put the others in ignore=COL[,COL..]")
        cols["images"] = sorted(like, key=natural_key)
    cols["images"] = _as_list(cols.get("images", []))
    uncovered = [c for c in like if c not in cols["images"]]
    if uncovered and spec.strict:
        raise SourceError(f"{where}: image-like column(s) {uncovered} are neither in columns.images "
                          f"{cols['images']} nor in ignore; add them to one (or strict=false)")
    used = {c for v in cols.values() for c in _as_list(v)} | set(ignored) | set(like)
    return ColumnMap(cols, ignored, [c for c in names if c not in used])


def _check_image(data: bytes | None, path: Path | None) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(data) if data is not None else path) as im:
        im.verify()


def image_refs(value: Any, base_dir: Path | None, where: str) -> list:
    """The image references in one cell (None and empty entries skipped), each checked to decode.

    Raises:
        ValueError: an image that is missing or cannot be decoded (the caller adds row and column)."""
    from PIL import Image

    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in image_refs(v, base_dir, where)]
    data, path = None, None
    if isinstance(value, Image.Image):
        return [value]
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data is None and not path:
            return []
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, (str, Path)):
        path = value
    else:
        raise ValueError(f"an image must be a path, bytes, a {{bytes, path}} dict or a PIL image, "
                         f"got {type(value).__name__}")
    if data is None:
        path = Path(path)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ValueError(f"image file '{path}' does not exist")
    try:
        _check_image(data, None if data is not None else path)
    except Exception as e:  # PIL raises several types for broken data
        raise ValueError(f"image cannot be decoded ({type(e).__name__}: {e})") from None
    return [data if data is not None else str(path)]


def _plain(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _parse_list(v: Any) -> Any:
    """A Python-literal list in a string ("['3', '4']", MMMU's options) -> the list; else ``v``."""
    if isinstance(v, str) and v.strip().startswith("["):
        try:
            parsed = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            return v
        return parsed if isinstance(parsed, list) else v
    return v


def map_row(row: dict, cmap: ColumnMap, adapter: Adapter | None, base_dir: Path | None, where: str) -> dict:
    """One dataset row -> a record for ``sample_from_row`` (fields renamed, images checked, answers handled).

    Raises:
        ValueError: naming the column, for an image that cannot be used or an adapter's complaint."""
    rec: dict[str, Any] = {f: row[c] for f, c in cmap.fields.items() if f != "images"}
    rec["images"] = []
    for col in cmap.fields["images"]:
        try:
            rec["images"] += [(col, r) for r in image_refs(row[col], base_dir, where)]
        except ValueError as e:
            raise ValueError(f"column '{col}': {e}") from None
    rec["meta"] = {**(adapter.meta if adapter else {}), **{c: row[c] for c in cmap.meta if _plain(row[c])}}
    rec["choices"] = [str(c) for c in _parse_list(rec.get("choices")) or []] or None
    if adapter and adapter.prepare:
        rec = adapter.prepare(rec, row)
    rec["images"] = [r for _, r in rec["images"]]
    answer = _parse_list(rec.get("answer"))
    if isinstance(answer, (list, tuple)):  # several right answers (ChartQA's label): any one counts
        answers = [str(a) for a in answer if a is not None and str(a).strip()]
        rec["answer"] = answers[0] if answers else None
        if len(answers) > 1:
            rec["meta"]["answers"] = answers
    choices = rec.pop("choices")
    if choices:
        rec["meta"]["choices"] = choices
        if not (adapter and adapter.choices_in_question):
            rec["question"] = with_choices(rec["question"], choices)
    return rec


@dataclass
class ResolvedSource:
    """A spec's adapter, opened split and column map: what its rows are read through."""

    adapter: Adapter | None
    opened: OpenedSplit
    cmap: ColumnMap


def resolve_source(spec: SourceSpec) -> ResolvedSource:
    """Open the spec's split and resolve its columns. Raises SourceError for the strict cases of
    :mod:`vlrl.data.sources`."""
    adapter = get_adapter(spec.adapter) if spec.adapter else None
    opened = open_split(spec, adapter.split if adapter else None)
    cmap = resolve_columns(spec, opened.dataset, adapter, f"data source '{spec.name}' split '{opened.split}'")
    return ResolvedSource(adapter, opened, cmap)


def dataset_rows(spec: SourceSpec) -> Iterator[tuple[str, Any, str]]:
    """(where, record or error, default id) for each row of the spec's split, after ``where`` and ``limit``.
    Raises SourceError (before the first row) for the strict cases of :mod:`vlrl.data.sources`."""
    from vlrl.data.records import BadRowError

    resolved = resolve_source(spec)
    adapter, opened, cmap = resolved.adapter, resolved.opened, resolved.cmap
    with quiet_datasets():  # per-call casts and selections: their progress bars are noise
        ds = undecoded(opened.dataset, cmap.fields["images"])
        rows = list(filter_rows(ds, spec.where, spec.name))[: spec.limit]
        ds = ds.select(rows)
    domain = spec.domain or (adapter.name if adapter and "domain" not in cmap.fields else None)
    stem = Path(spec.path).name
    for i, row in zip(rows, ds):
        at = f"{spec.name} [{opened.split} row {i}]"
        try:
            rec = map_row(row, cmap, adapter, opened.base_dir, at)
        except ValueError as e:
            yield at, BadRowError(f"{at}: {e}"), ""
            continue
        if domain:
            rec["domain"] = domain
        yield at, rec, f"{stem}-{opened.split}-{i}"
