"""Long-CoT warm-up data, from two sources, both verified and written in the standard dataset format.

1. ``programmatic``: the synthetic tasks' own chain-of-thought traces (``synth/cot.py``), every one checked
   by the answer verifier.
2. ``rejection_sample``: any model answers each prompt n times under a long-CoT system prompt; only
   verified-correct responses are kept, and every prompt's pass rate is recorded (``meta.pass_rate``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from vlrl.data.synth import generate
from vlrl.eval.runner import evaluate_samples
from vlrl.models.generation import SamplingParams
from vlrl.rewards.verify import AnswerVerifier
from vlrl.types import Sample

LONG_COT_SYSTEM_PROMPT = (
    "Think step by step. State a plan, work it out, check intermediate results, try a second way to confirm, "
    "correct any mistake you find, and finish with a last line 'Answer: <final answer>'."
)


def programmatic(task: str, n: int, seed: int = 0, levels: str | None = None, style: str = "long",
                 slip: float = 0.2) -> list[Sample]:
    """``n`` synthetic samples with ``style`` responses; raises if any response fails verification."""
    samples = generate(task, n, seed=seed, levels=levels, style=style, slip=slip)
    verifier = AnswerVerifier(symbolic=False)
    bad = [s.id for s in samples if verifier(s.response, s).reward != 1.0]
    if bad:
        raise AssertionError(f"{len(bad)} generated responses fail verification, e.g. {bad[:3]}")
    return samples


def rejection_sample(model, processor, samples: Sequence[Sample], n: int = 8, temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int = 512, system_prompt: str | None = LONG_COT_SYSTEM_PROMPT,
                     keep: str = "all", batch_size: int = 16, seed: int = 0) -> tuple[list[Sample], dict[str, float]]:
    """Sample n responses per prompt, keep the verified-correct ones.

    Args:
        keep: "all" (every distinct correct response) or "shortest" (one per prompt).

    Returns:
        (kept samples, one per kept response, ``meta.pass_rate`` set; {sample id: pass rate} for all prompts).
    """
    if keep not in ("all", "shortest"):
        raise ValueError(f"keep must be 'all' or 'shortest', got '{keep}'")
    verifier = AnswerVerifier()
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, num_samples=n)
    records = evaluate_samples(model, processor, samples, params, verifier, batch_size, seed, system_prompt)
    kept, rates = [], {}
    by_id = {s.id: s for s in samples}
    for rec in records:
        rates[rec.id] = sum(rec.correct) / len(rec.correct)
        good = sorted({(len(t), t) for t, ok in zip(rec.responses, rec.correct) if ok})
        for j, (_, text) in enumerate(good[:1] if keep == "shortest" else good):
            src = by_id[rec.id]
            kept.append(dataclasses.replace(src, id=f"{src.id}-rs{j}", response=text,
                                            meta={**src.meta, "pass_rate": rates[rec.id], "source_id": src.id}))
    verifier.close()
    return kept, rates
