"""Synthetic task generators: deterministic by seed, with a difficulty knob and domain tags.

``generate(task, n, seed, levels)`` returns Samples with in-memory PIL images; ``write_dataset`` saves them
as the standard JSONL + PNG layout that ``vlrl.data.load_samples`` reads back. Tasks:

- ``shapes``: scenes of coloured shapes, counting / comparison / spatial questions (image-text);
- ``arithmetic``: arithmetic expressions and word problems (text-only);
- ``text_rendered``: arithmetic rendered into images, each paired with its text twin (``pair_id``);
- ``shape_math``: count the shapes of a scene, then evaluate an expression in the count (image-text
  problems where a chain of thought pays: perception, then arithmetic);
- ``curation_pool``: a raw pool for ``vlrl curate`` with planted choice / true-false / proof / unanswerable /
  guessable items (``meta["kind"]``), see ``pool.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from vlrl.data.synth.cot import with_responses
from vlrl.data.synth.arithmetic import generate_arithmetic, generate_text_rendered
from vlrl.data.synth.pool import generate_pool
from vlrl.data.synth.shapes import generate_shape_math, generate_shapes
from vlrl.types import Sample

TASKS: dict[str, Callable[..., list[Sample]]] = {
    "shapes": generate_shapes,
    "arithmetic": generate_arithmetic,
    "text_rendered": generate_text_rendered,
    "shape_math": generate_shape_math,
    "curation_pool": generate_pool,
}
# named system prompts for ``synth:...&system=NAME`` (any other value is used as the prompt text)
SYSTEM_PROMPTS = {"direct": "Answer with the final answer only, no reasoning."}
# the tasks whose texts build the tiny tokenizer (fixed, so adding a task never changes the tokenizer)
CORPUS_TASKS = ("arithmetic", "shapes", "text_rendered")


def parse_levels(spec: str | int | Sequence[int] | None) -> tuple[int, ...]:
    """"1-3" -> (1, 2, 3); "2,4" -> (2, 4); 3 -> (3,); None -> (1..5)."""
    if spec is None:
        return (1, 2, 3, 4, 5)
    if isinstance(spec, int):
        levels: tuple[int, ...] = (spec,)
    elif isinstance(spec, str):
        levels = ()
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            levels += tuple(range(int(lo), int(hi or lo) + 1))
    else:
        levels = tuple(int(x) for x in spec)
    if not levels or any(not 1 <= x <= 5 for x in levels):
        raise ValueError(f"difficulty '{spec}': levels must be within 1-5 (e.g. '1-3' or '2,4')")
    return levels


def generate(task: str, n: int, seed: int = 0, levels: str | Sequence[int] | None = None, style: str = "direct",
             slip: float = 0.0, system: str | None = None, **kwargs) -> list[Sample]:
    """``n`` samples of ``task``; ``response`` in ``style`` (direct | short | long, see ``cot.py``), with a
    deliberate caught mistake in a ``slip`` fraction of long responses. ``system`` (a ``SYSTEM_PROMPTS``
    name or a text) puts a system turn before each question, e.g. direct answers under "answer directly",
    so one model learns both modes and the curation guess probe can ask for an answer without reasoning."""
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task '{task}'. Known tasks: {', '.join(sorted(TASKS))}")
    samples = TASKS[task](n, seed=seed, levels=parse_levels(levels), **kwargs)
    if system:
        text = SYSTEM_PROMPTS.get(system, system)
        for s in samples:
            s.messages = [{"role": "system", "content": text}, {"role": "user", "content": s.question or ""}]
    if task == "curation_pool":  # a raw prompt pool: no target responses
        return samples
    return with_responses(samples, style, slip, seed)


def corpus(n_per_task: int = 300, seed: int = 12345) -> list[str]:
    """Texts to train the embedded default's tokenizer on: questions, responses and captions of every task."""
    texts: list[str] = []
    for task in CORPUS_TASKS:
        for style in ("direct", "long"):
            for s in generate(task, n_per_task, seed=seed, style=style, slip=0.5):
                texts += [s.question or "", s.response or "", s.meta.get("caption", "")]
    return [t for t in texts if t]


def write_dataset(samples: Sequence[Sample], out_dir: str | Path, name: str = "data.jsonl") -> Path:
    """Write samples as ``out_dir/name`` (JSONL) with images as PNGs under ``out_dir/images/`` (an image
    that is a file already is referenced where it is)."""
    from processors.image import load_image

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for s in tqdm(samples, desc=f"writing {path}", unit="sample", disable=len(samples) < 500):
            images = []
            for j, img in enumerate(s.images):
                if isinstance(img, (str, Path)):  # already a file: keep pointing at it
                    images.append(str(Path(img).resolve()))
                    continue
                rel = f"images/{s.id}-{j}.png"
                load_image(img, sample_id=s.id).save(out_dir / rel)  # PIL, bytes (dataset sources) or {bytes, path}
                images.append(rel)
            row = {"id": s.id, "question": s.question, "images": images, "answer": s.answer,
                   "response": s.response, "domain": s.domain, "difficulty": s.difficulty,
                   "modality": s.modality, "pair_id": s.pair_id, "meta": s.meta}
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)
    return path
