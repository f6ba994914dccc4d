"""Records -> Samples: JSONL files, Hugging Face datasets, Python lists, ``synth:`` specs.

JSONL row fields: ``question`` (or ``messages`` / ``prompt`` / ``problem`` / ``query``), ``images`` (a path
or list of paths, relative to the JSONL file; or ``image``), ``answer``, ``response``, ``domain``,
``difficulty``, ``modality``, ``pair_id``, ``id``; any other field is kept in ``meta``. Datasets (local or
by id, with splits, column maps and adapters) are mapped to the same fields by :mod:`vlrl.data.mapping`. A bad row (unparseable JSON, no question, a missing image file) is an error
naming the file and line; with ``on_bad_row="skip"`` it is skipped, counted and listed in the
:class:`LoadReport` instead - never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qsl

from vlrl.data.mapping import dataset_rows
from vlrl.data.sources import parse_source
from vlrl.types import Sample

QUESTION_KEYS = ("question", "prompt", "problem", "query")
KNOWN = {"id", "messages", "images", "image", "answer", "response", "domain", "difficulty", "modality",
         "pair_id", "meta", *QUESTION_KEYS}


class BadRowError(ValueError):
    """A row that cannot become a Sample; the message names file and line (or row index)."""


@dataclass
class LoadReport:
    """What a load did: samples kept and rows skipped (with where and why)."""

    loaded: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"loaded {self.loaded} samples"
        if self.skipped:
            s += f", skipped {len(self.skipped)} bad rows:\n  " + "\n  ".join(self.skipped[:20])
            if len(self.skipped) > 20:
                s += f"\n  ... and {len(self.skipped) - 20} more"
        return s


def _images(row: dict, base_dir: Path | None, where: str) -> list:
    images = row.get("images", row.get("image"))
    if images is None:
        return []
    if not isinstance(images, list):
        images = [images]
    out = []
    for im in images:
        if isinstance(im, dict) and im.get("bytes") is None and im.get("path"):
            im = im["path"]
        if isinstance(im, str):
            path = Path(im)
            if base_dir is not None and not path.is_absolute():
                path = base_dir / path
            if path.is_dir():
                raise BadRowError(f"{where}: image '{path}' is a directory, not an image file")
            if not path.is_file():
                raise BadRowError(f"{where}: image file '{path}' does not exist")
            im = str(path)
        out.append(im)
    return out


def sample_from_row(row: Any, where: str, base_dir: Path | None = None, default_id: str = "") -> Sample:
    """Convert one record to a Sample. ``where`` ("data.jsonl:12") prefixes every error."""
    if not isinstance(row, dict):
        raise BadRowError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    question = next((row[k] for k in QUESTION_KEYS if row.get(k) is not None), None)
    if question is None and not row.get("messages"):
        raise BadRowError(f"{where}: no question (expected one of {', '.join(QUESTION_KEYS)} or 'messages')")
    difficulty = row.get("difficulty")
    if difficulty is not None and not isinstance(difficulty, int):
        try:
            difficulty = int(difficulty)
        except (TypeError, ValueError):
            raise BadRowError(f"{where}: 'difficulty' must be an integer level, got {difficulty!r}") from None
    meta = dict(row.get("meta") or {})
    meta.update({k: v for k, v in row.items() if k not in KNOWN})
    answer = row.get("answer")
    if isinstance(answer, bool) or (answer is not None and not isinstance(answer, (str, int, float))):
        raise BadRowError(f"{where}: 'answer' must be a string or a number, got {type(answer).__name__} "
                          f"{answer!r:.60} (write several answers as one string, e.g. \"2, 3\")")
    try:
        return Sample(
            id=str(row.get("id") or default_id), question=question, messages=row.get("messages"),
            images=_images(row, base_dir, where), answer=None if answer is None else str(answer),
            response=row.get("response"), domain=row.get("domain") or "general", difficulty=difficulty,
            modality=row.get("modality") or "", pair_id=row.get("pair_id"), meta=meta,
        )
    except BadRowError:
        raise  # already names the row
    except ValueError as e:
        raise BadRowError(f"{where}: {e}") from None


def _rows_jsonl(path: Path) -> Iterable[tuple[str, Any, str]]:
    with path.open("rb") as f:  # decoded per line: one non-UTF-8 line is one bad row, not a fatal error
        for i, raw in enumerate(f, start=1):
            where = f"{path}:{i}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, BadRowError(f"{where}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})"), ""
                continue
            if not line.strip():
                continue
            try:
                yield where, json.loads(line), f"{path.stem}-{i}"
            except json.JSONDecodeError as e:
                yield where, BadRowError(f"{where}: not valid JSON ({e.msg} at column {e.colno})"), ""


def parse_synth_spec(spec: str) -> tuple[str, dict]:
    """'synth:shapes?n=100&seed=1&levels=1-3&style=long&slip=0.2' -> ('shapes', {...})."""
    task, _, query = spec.removeprefix("synth:").partition("?")
    kw: dict[str, Any] = dict(parse_qsl(query))
    for key in ("n", "seed", "image_size"):
        if key in kw:
            kw[key] = int(kw[key])
    if "slip" in kw:
        kw["slip"] = float(kw["slip"])
    return task, kw


def load_samples(source: str | Path | dict | Sequence[dict], on_bad_row: str = "skip",
                 report: LoadReport | None = None) -> list[Sample]:
    """Load Samples from a JSONL file, a ``synth:`` spec, a list of dicts, or a dataset source (a local
    dataset directory, an ``hf:`` string or a mapping: :mod:`vlrl.data.sources`).

    Raises:
        BadRowError: on the first bad row when ``on_bad_row == "error"``.
        SourceError: a dataset source that cannot be opened as asked (a missing split or column, ...).
        FileNotFoundError: the source does not exist.
    """
    if on_bad_row not in ("skip", "error"):
        raise ValueError(f"on_bad_row must be 'skip' or 'error', got '{on_bad_row}'")
    report = report if report is not None else LoadReport()
    if isinstance(source, str) and source.startswith("synth:"):
        from vlrl.data.synth import generate

        task, kw = parse_synth_spec(source)
        samples = generate(task, kw.pop("n", 100), **kw)
        report.loaded += len(samples)
        return samples
    spec = parse_source(source)
    if spec is not None:
        rows, base = dataset_rows(spec), None
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"data source '{path}' does not exist")
        rows, base = _rows_jsonl(path), path.parent
    else:
        rows, base = ((f"row {i}", r, f"row-{i}") for i, r in enumerate(source)), None
    samples = []
    for where, row, default_id in rows:
        try:
            if isinstance(row, BadRowError):
                raise row
            samples.append(sample_from_row(row, where, base, default_id))
        except BadRowError as e:
            if on_bad_row == "error":
                raise
            report.skipped.append(str(e))
    report.loaded += len(samples)
    return samples


def validate_samples(samples: Sequence[Sample], processor, source: str, on_bad_row: str = "skip",
                     report: LoadReport | None = None) -> list[Sample]:
    """The samples ``processor`` can encode: one pass over every row at load time (``processor.check``:
    ``<image>`` tags against images, prompt length against ``max_length``, every image decoded), so that
    a bad row is skipped and listed (``on_bad_row: skip``) or stops the load (``error``) here, not when a
    batch draws it mid-run. A progress bar shows on large sets."""
    from tqdm import tqdm

    from processors.chat import PlaceholderError
    from processors.image import ImageLoadError
    from processors.processor import PromptTooLongError

    report = report if report is not None else LoadReport()
    kept = []
    for s in tqdm(samples, desc=f"[data] checking {source}", disable=len(samples) < 5000, mininterval=1.0):
        try:
            processor.check(s)
            kept.append(s)
        except (PlaceholderError, PromptTooLongError, ImageLoadError) as e:
            if on_bad_row == "error":
                raise BadRowError(f"{source}: {e} (data.on_bad_row=skip skips such rows)") from None
            report.skipped.append(f"{source}: {e}")
    report.loaded -= len(samples) - len(kept)
    return kept


def load_data(sources: Sequence[str], on_bad_row: str = "skip", processor=None) -> list[Sample]:
    """All samples of ``sources``, with the load report printed (bad rows counted and listed). With
    ``processor``, every row is also checked against it (:func:`validate_samples`)."""
    report = LoadReport()
    samples = []
    for src in sources:
        part = load_samples(src, on_bad_row, report)
        samples += validate_samples(part, processor, str(src), on_bad_row, report) if processor is not None else part
    print(f"[data] {report.summary()}")
    if not samples:
        raise ValueError(f"no samples loaded from {sources}")
    return samples
