"""Adapters: named presets of the column map and answer handling for public VLM-RL sets.

``adapter: NAME`` in a source (or ``?adapter=NAME``) starts from the preset; the source's own ``columns``,
``ignore``, ``split`` and ``domain`` win over it. Every adapter sets ``domain`` to its name, so
``vlrl eval`` reports accuracy per benchmark in its by-domain table.

==============  ===========================================================================================
geometry3k      ``images`` (list), ``problem`` (holds ``<image>``), ``answer``
clevr_count     ``images`` (list), ``problem``, ``answer`` (an integer)
mathvista       ``decoded_image``, ``query`` (the hint, question and lettered choices), ``choices``,
                ``answer`` (the option text), ``precision`` (float answers compare to half a unit in the
                last place); the ``image`` column (a path into the archive) is ignored. Default split
                ``testmini`` (``test`` has no answers).
mmmu            ``image_1 .. image_7`` (empty ones skipped), ``question`` with ``<image k>`` tags (turned
                into ``<image>`` in order, the images reordered to match), ``options`` (a Python-literal
                list; the answer is its letter), ``topic_difficulty`` Easy/Medium/Hard -> 1/2/3
chartqa         ``image``, ``query``, ``label`` (a list: any of its entries is right; numbers within 5%,
                ChartQA's relaxed accuracy)
==============  ===========================================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

Prepare = Callable[[dict, dict], dict]  # (mapped record, raw row) -> mapped record


@dataclass(frozen=True)
class Adapter:
    """A preset: ``columns`` (vlrl field -> column), ``ignore`` (image-like columns deliberately unused),
    ``split`` (the default split), ``choices_in_question`` (the question text already lists the options,
    so the choice template is not applied again) and ``prepare`` (adapter-specific answer handling)."""

    name: str
    columns: dict[str, Any]
    ignore: tuple[str, ...] = ()
    split: str | None = None
    choices_in_question: bool = False
    prepare: Prepare | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # added to every sample's meta (verifier tolerances)


def _mathvista(rec: dict, row: dict) -> dict:
    precision = row.get("precision")
    if row.get("answer_type") == "float" and precision is not None:
        # MathVista's answers are rounded to `precision` decimals: half a unit in that place is a match
        rec["meta"]["abs_tol"] = 0.5 * 10 ** -int(precision)
    return rec


_MMMU_TAG = re.compile(r"<image\s*(\d+)>")
_MMMU_LEVEL = {"easy": 1, "medium": 2, "hard": 3}


def _mmmu(rec: dict, row: dict) -> dict:
    """``<image k>`` tags -> ``<image>``, images reordered (and repeated) to follow the tags in the text,
    question first, then the options; images the text never names are dropped (counted in meta)."""
    by_col = {col: ref for col, ref in rec["images"]}
    text = rec["question"] + "\n" + "\n".join(str(o) for o in rec.get("choices") or [])
    order = [f"image_{k}" for k in _MMMU_TAG.findall(text)]
    if order:
        missing = [c for c in order if c not in by_col]
        if missing:
            raise ValueError(f"the question names {missing} but those columns are empty")
        rec["images"] = [(c, by_col[c]) for c in order]
        rec["meta"]["unreferenced_images"] = len(set(by_col) - set(order))
        rec["question"] = _MMMU_TAG.sub("<image>", rec["question"])
        rec["choices"] = [_MMMU_TAG.sub("<image>", str(o)) for o in rec.get("choices") or []] or None
    level = str(rec.get("difficulty") or "").strip().lower()
    rec["difficulty"] = _MMMU_LEVEL.get(level)
    return rec


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    Adapter("geometry3k", {"images": ["images"], "question": "problem", "answer": "answer"}),
    Adapter("clevr_count", {"images": ["images"], "question": "problem", "answer": "answer"}),
    Adapter("mathvista", {"images": ["decoded_image"], "question": "query", "choices": "choices",
                          "answer": "answer", "id": "pid"},
            ignore=("image",), split="testmini", choices_in_question=True, prepare=_mathvista),
    Adapter("mmmu", {"images": [f"image_{k}" for k in range(1, 8)], "question": "question", "choices": "options",
                     "answer": "answer", "id": "id", "difficulty": "topic_difficulty"}, prepare=_mmmu),
    Adapter("chartqa", {"images": ["image"], "question": "query", "answer": "label"}, meta={"rel_tol": 0.05}),
)}


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset adapter '{name}'; known: {', '.join(sorted(ADAPTERS))} "
                         f"(or give the column map yourself: columns.FIELD=COLUMN)")
    return ADAPTERS[name]
