"""Model-based pass rates (k1.5 §2.1), cached so re-runs and interrupted runs never redo a prompt.

Two modes share one batched generation loop:

- ``solve``: the model answers each prompt ``n`` times (default 10) at a relatively high temperature;
  the pass rate is the difficulty proxy (lower = harder), bucketed by configurable thresholds.
- ``guess``: the easy-to-hack probe. A system prompt asks for the final answer only and the response
  is pre-filled with ``guess_prefix`` (default "Answer:"), so the model states an answer with no chain
  of thought, ``n`` times (default 8), a few tokens each; any correct guess marks the prompt hackable.

The cache is one JSONL file per process and mode, appended after every batch; its key hashes the model
identity, the mode and its generation settings, and the prompt (id, text, answer, image bytes).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
from tqdm import tqdm

from vlrl.models.builder import WEIGHTS_NAME
from vlrl.models.generation import SamplingParams, generate_texts
from vlrl.rewards.base import RewardFn
from vlrl.types import Sample


@dataclass
class ProbeConfig:
    """Generation settings of one probe (``solve`` or ``guess``)."""

    n: int = 10
    temperature: float = 1.0
    max_new_tokens: int = 200
    guess_prefix: str = ""  # "" = free answer (solve); e.g. "Answer:" = forced answer without reasoning
    system_prompt: str = ""  # e.g. "Answer with the final answer only, no reasoning." for the guess probe
    batch_size: int = 32


def model_identity(model_dir: str | Path) -> str:
    """Path + size + mtime of the weights file: changes whenever the model is retrained."""
    f = Path(model_dir) / WEIGHTS_NAME
    st = f.stat()
    return f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def prompt_key(sample: Sample, model_id: str, mode: str, cfg: ProbeConfig) -> str:
    h = hashlib.sha1(f"{model_id}|{mode}|{cfg.n}|{cfg.temperature}|{cfg.max_new_tokens}|{cfg.guess_prefix}|{cfg.system_prompt}|"
                     f"{sample.id}|{sample.question}|{sample.messages}|{sample.answer}".encode())
    for img in sample.images:
        if isinstance(img, (str, Path)):
            h.update(str(img).encode())
        elif isinstance(img, bytes):
            h.update(img)
        else:  # a decoded image: its mode, size and pixels (no re-encoding)
            h.update(f"{img.mode}{img.size}".encode())
            h.update(img.tobytes())
    return h.hexdigest()


class ProbeCache:
    """key -> list of per-response correctness. Reads every ``{mode}*.jsonl`` in ``directory`` (all
    processes' files), appends to this process's own file."""

    def __init__(self, directory: str | Path, mode: str, rank: int = 0) -> None:
        self.dir, self.mode = Path(directory), mode
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{mode}.rank{rank}.jsonl"
        self.reload()

    def reload(self) -> None:
        self.data: dict[str, list[bool]] = {}
        for f in sorted(self.dir.glob(f"{self.mode}.rank*.jsonl")):
            for line in f.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interrupted write: recompute that prompt
                    continue
                self.data[row["key"]] = row["correct"]

    def add(self, rows: Mapping[str, list[bool]]) -> None:
        with self.path.open("a") as f:
            for key, correct in rows.items():
                f.write(json.dumps({"key": key, "correct": correct}) + "\n")
        self.data.update(rows)


def _run_batch(model, processor, chunk: Sequence[Sample], cfg: ProbeConfig, reward_fn: RewardFn,
               generator: torch.Generator) -> list[list[bool]]:
    """(len(chunk), n) correctness of n sampled responses per prompt."""
    prefix = processor.tokenize(cfg.guess_prefix) if cfg.guess_prefix else None
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, num_samples=cfg.n)
    out = generate_texts(model, processor, chunk, params, prefixes=[prefix] * len(chunk),
                         system_prompt=cfg.system_prompt or None, batch_size=len(chunk), generator=generator)
    result = []
    for i, s in enumerate(chunk):
        texts = [cfg.guess_prefix + out.texts[r] for r in range(i * cfg.n, (i + 1) * cfg.n)]
        result.append([reward_fn(t, s).reward >= 1.0 for t in texts])
    return result


@torch.no_grad()
def probe(model, processor, samples: Sequence[Sample], cfg: ProbeConfig, reward_fn: RewardFn, cache: ProbeCache,
          model_id: str, seed: int = 0, desc: str = "probe", progress: bool = True) -> dict[str, list[bool]]:
    """Correctness lists for ``samples`` (by sample id), generating only the prompts not in ``cache``.
    Each batch is written to the cache as soon as it is scored."""
    keys = {s.id: prompt_key(s, model_id, cache.mode, cfg) for s in samples}
    todo = [s for s in samples if keys[s.id] not in cache.data]
    model.eval()
    gen = torch.Generator(device=model.device).manual_seed(seed)
    bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc=desc, unit="prompt",
               disable=not progress, mininterval=1.0)
    for start in range(0, len(todo), cfg.batch_size):
        chunk = todo[start : start + cfg.batch_size]
        results = _run_batch(model, processor, chunk, cfg, reward_fn, gen)
        cache.add({keys[s.id]: r for s, r in zip(chunk, results)})
        bar.update(len(chunk))
    bar.close()
    return {s.id: cache.data[keys[s.id]] for s in samples}


def bucket(pass_rate: float, thresholds: Mapping[str, float]) -> tuple[str, int]:
    """(name, level) of the first bucket whose threshold ``pass_rate`` reaches; thresholds are taken
    from the highest down, and the level is that position (0 = easiest, higher = harder).

    >>> bucket(0.5, {"trivial": 1.0, "easy": 0.7, "medium": 0.3, "hard": 0.01, "unsolved": 0.0})
    ('medium', 2)"""
    for level, (name, threshold) in enumerate(sorted(thresholds.items(), key=lambda kv: -kv[1])):
        if pass_rate >= threshold:
            return name, level
    raise ValueError(f"pass rate {pass_rate} is below every difficulty threshold {dict(thresholds)}; "
                     f"the last threshold should be 0")
