"""Hugging Face datasets as sources: a local dataset (``save_to_disk`` output, parquet / JSON files, an
image folder) or a dataset id, with a split, a subset, a column map, a row filter and a limit.

A source is a string or a mapping (``data.sources`` takes both)::

    sources:
      - hf:AI4Math/MathVista?split=testmini&adapter=mathvista&limit=200        # compact string
      - path: data/MMMU                 # a local directory or a dataset id
        config: Accounting              # subset (load_dataset's ``name``)
        split: validation
        adapter: mmmu                   # preset column map + answer handling (vlrl.data.adapters)
        columns: {question: question}   # vlrl field -> dataset column; overrides the adapter's
        where: {question_type: multiple-choice}
        limit: 100

The compact string is ``hf:PATH_OR_ID?split=S&config=C&adapter=A&limit=N&columns.FIELD=COL[,COL..]``
``&where.COL=V[,V..]&ignore=COL[,COL..]&domain=D&strict=false``. Fields: ``question``, ``answer``,
``images`` (one column or several, empty ones skipped), ``choices``, ``id``, ``domain``, ``difficulty``,
``response``, ``messages``. Loading goes through ``datasets.load_from_disk`` / ``load_dataset``, so the
user's cache and ``HF_DATASETS_OFFLINE`` work as everywhere in the ecosystem.

Strict by default, because a silent wrong load trains and evaluates on the wrong thing: a split that does
not exist, a dataset with several splits and none named, a mapped column that does not exist, two
unmapped question-like columns, or image-like columns the map does not cover are errors naming them
(``strict: false`` opts out of the last two; ``ignore`` names columns deliberately left out).
"""

from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import parse_qsl

FIELDS = ("question", "answer", "images", "choices", "id", "domain", "difficulty", "response", "messages",
          "modality", "pair_id")
QUESTION_COLUMNS = ("question", "prompt", "problem", "query", "messages")
_IMAGE_NAME = re.compile(r"^(images?|imgs?|pictures?|photos?|decoded_image|image_?\d+|image_path)$", re.I)


DATA_FILES = {".parquet": "parquet", ".csv": "csv"}  # read as datasets; .jsonl/.json only under hf:


class SourceError(ValueError):
    """A data source that cannot be opened as asked; the message names the source and what is wrong."""


@dataclass
class SourceSpec:
    """One dataset source. ``columns`` maps vlrl fields to dataset columns (``images`` may be a list)."""

    path: str
    split: str | None = None
    config: str | None = None
    adapter: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)
    where: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    ignore: list[str] = field(default_factory=list)
    domain: str | None = None
    strict: bool = True

    @property
    def name(self) -> str:
        return self.path + (f"[{self.config}]" if self.config else "")


def parse_source(src: Any) -> SourceSpec | None:
    """A dataset spec from a mapping, an ``hf:`` string or a local dataset directory; None for the other
    source kinds (a JSONL file, a ``synth:`` spec)."""
    if isinstance(src, SourceSpec):
        return src
    if isinstance(src, dict) or hasattr(src, "keys"):
        data = dict(src)
        known = {f.name for f in dataclasses.fields(SourceSpec)}
        if unknown := sorted(set(data) - known):
            raise SourceError(f"data source {data}: unknown key(s) {unknown}; known: {sorted(known)}")
        if "path" not in data:
            raise SourceError(f"data source {data}: needs 'path' (a local dataset or a dataset id)")
        spec = SourceSpec(**data)
    elif isinstance(src, str) and src.startswith("hf:"):
        spec = _parse_compact(src)
    elif isinstance(src, (str, Path)) and (Path(src).is_dir() or Path(src).suffix in DATA_FILES):
        spec = SourceSpec(path=str(src))  # a dataset folder, or a parquet / CSV file (JSONL stays vlrl's own)
    else:
        return None
    spec.columns = {k: v if isinstance(v, str) else list(v) for k, v in dict(spec.columns).items()}
    spec.where, spec.ignore = dict(spec.where), list(spec.ignore)
    if bad := sorted(set(spec.columns) - set(FIELDS)):
        raise SourceError(f"data source '{spec.name}': columns maps unknown field(s) {bad}; fields: {list(FIELDS)}")
    if spec.limit is not None and int(spec.limit) < 1:
        raise SourceError(f"data source '{spec.name}': limit must be >= 1, got {spec.limit}")
    return spec


def _parse_compact(src: str) -> SourceSpec:
    path, _, query = src.removeprefix("hf:").partition("?")
    spec = SourceSpec(path=path)
    for key, value in parse_qsl(query, keep_blank_values=True):
        head, _, sub = key.partition(".")
        if head == "columns" and sub:
            spec.columns[sub] = value.split(",") if "," in value or sub == "images" else value
        elif head == "where" and sub:
            spec.where[sub] = value.split(",")
        elif key == "ignore":
            spec.ignore = [c for c in value.split(",") if c]
        elif key == "limit":
            spec.limit = int(value)
        elif key == "strict":
            spec.strict = value.lower() not in ("0", "false", "no")
        elif key in ("split", "config", "adapter", "domain"):
            setattr(spec, key, value)
        else:
            raise SourceError(f"data source '{src}': unknown key '{key}' (split, config, adapter, limit, domain, "
                              f"strict, ignore, columns.FIELD, where.COLUMN)")
    return spec


@dataclass
class OpenedSplit:
    """The rows of one split, with where they came from."""

    dataset: Any  # datasets.Dataset
    split: str
    splits: dict[str, int]  # every split of the source and its row count
    base_dir: Path | None  # relative image paths resolve against it


def _load(spec: SourceSpec, default_split: str | None = None):
    import datasets

    path = Path(spec.path)
    if path.is_dir() and any((path / f).exists() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
        return datasets.load_from_disk(str(path)), path
    if path.exists():
        sub = path / spec.config if spec.config and (path / spec.config).is_dir() else None
        if sub is not None and not (path / "README.md").exists():  # a subset as a folder, no README configs
            return datasets.load_dataset(str(sub)), path
        if path.is_file():
            kind = {".jsonl": "json", ".json": "json", **DATA_FILES}.get(path.suffix)
            if kind is None:
                raise SourceError(f"data source '{spec.path}': cannot read a '{path.suffix}' file as a dataset")
            return datasets.load_dataset(kind, data_files=str(path)), path.parent
        return datasets.load_dataset(str(path), name=spec.config), path
    try:  # a dataset id: the hub, or the user's cache when offline
        return datasets.load_dataset(spec.path, name=spec.config, split=spec.split or default_split), None
    except (FileNotFoundError, ConnectionError) as e:
        raise SourceError(f"data source '{spec.name}': not a local path, and the dataset id could not be loaded "
                          f"({type(e).__name__}: {e})") from None


def open_split(spec: SourceSpec, default_split: str | None = None) -> OpenedSplit:
    """Load ``spec``'s dataset and pick its split (``spec.split``, else ``default_split``, else the only one).

    Raises:
        SourceError: the split does not exist, or several exist and none is named.
    """
    import datasets

    try:
        obj, base = _load(spec, default_split)
    except ValueError as e:  # datasets' unknown split / config messages
        if isinstance(e, SourceError):
            raise
        raise SourceError(f"data source '{spec.name}': {e}") from None
    want = spec.split or default_split
    if isinstance(obj, datasets.DatasetDict):
        splits = {k: len(v) for k, v in obj.items()}
        if want is None:
            if len(obj) > 1:
                raise SourceError(f"data source '{spec.name}' has splits {_counts(splits)}: name one "
                                  f"(split: NAME, or ?split=NAME)")
            want = next(iter(obj))
        if want not in obj:
            raise SourceError(f"data source '{spec.name}' has no split '{want}'; its splits: {_counts(splits)}")
        return OpenedSplit(obj[want], want, splits, base)
    own = str(obj.split) if getattr(obj, "split", None) is not None else None
    if spec.split and own and own != spec.split:
        raise SourceError(f"data source '{spec.name}' holds split '{own}' only, not '{spec.split}'")
    name = own or want or "train"
    return OpenedSplit(obj, name, {name: len(obj)}, base)


def _counts(splits: dict[str, int]) -> str:
    return ", ".join(f"{k} ({n} rows)" for k, n in splits.items())


def image_like_columns(dataset) -> list[str]:
    """Columns holding images: a ``datasets.Image`` feature (or a list of them), or an image-like name."""
    import datasets

    def holds_image(feat) -> bool:
        if isinstance(feat, datasets.Image):
            return True
        inner = getattr(feat, "feature", None)
        return inner is not None and holds_image(inner)

    return [c for c, f in dataset.features.items() if holds_image(f) or _IMAGE_NAME.match(c)]


def natural_key(name: str) -> list:
    """'image_10' after 'image_2'."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def undecoded(dataset, columns: Iterable[str]):
    """``dataset`` with the Image features of ``columns`` left as {bytes, path}: vlrl checks and decodes
    images itself, so that a broken one is an error naming its row and column, not a crash mid-iteration."""
    import datasets

    def raw(feat):
        if isinstance(feat, datasets.Image):
            return datasets.Image(decode=False)
        if isinstance(feat, datasets.List):
            return datasets.List(raw(feat.feature), length=feat.length)
        if isinstance(feat, datasets.LargeList):
            return datasets.LargeList(raw(feat.feature))
        return feat

    for c in columns:
        new = raw(dataset.features[c])
        if new != dataset.features[c]:
            dataset = dataset.cast_column(c, new)
    return dataset


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """datasets' progress bars off inside the block, restored after (they are on by default)."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def filter_rows(dataset, where: dict[str, Any], source: str) -> Iterator[int]:
    """Indices of the rows whose ``where`` columns hold one of the given values (compared as strings)."""
    if not where:
        yield from range(len(dataset))
        return
    missing = [c for c in where if c not in dataset.column_names]
    if missing:
        raise SourceError(f"data source '{source}': where names missing column(s) {missing}; "
                          f"columns: {dataset.column_names}")
    wanted = {c: {str(v) for v in (vals if isinstance(vals, (list, tuple)) else [vals])} for c, vals in where.items()}
    table = dataset.select_columns(list(wanted))
    for i, row in enumerate(table):
        if all(str(row[c]) in vs for c, vs in wanted.items()):
            yield i
