"""Generate n responses per prompt and score them: the evaluation loop shared by `vlrl eval` and stages."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from processors.processor import MultimodalProcessor
from vlrl.eval.metrics import PromptRecord
from vlrl.models.generation import SamplingParams, generate_texts
from vlrl.models.vlm import VisionLanguageModel
from vlrl.rewards.base import RewardFn
from vlrl.types import Sample


def evaluate_samples(
    model: VisionLanguageModel,
    processor: MultimodalProcessor,
    samples: Sequence[Sample],
    params: SamplingParams,
    reward_fn: RewardFn,
    batch_size: int = 32,
    seed: int = 0,
    system_prompt: str | None = None,
    progress: bool = True,
) -> list[PromptRecord]:
    """``params.num_samples`` responses per sample (greedy when temperature is 0), each verified."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    records: list[PromptRecord] = []
    bar = tqdm(total=len(samples), desc="eval", unit="prompt", disable=not progress, mininterval=1.0)
    out = generate_texts(model, processor, samples, params, system_prompt=system_prompt, batch_size=batch_size,
                         generator=gen, on_batch=bar.update)
    bar.close()
    k = params.num_samples
    for i, s in enumerate(samples):
        rows = range(i * k, (i + 1) * k)
        texts = [out.texts[r] for r in rows]
        results = [reward_fn(t, s) for t in texts]
        records.append(PromptRecord(
            id=s.id, modality=s.modality, domain=s.domain, difficulty=s.difficulty, pair_id=s.pair_id,
            correct=[r.reward >= 1.0 for r in results], answers=[r.extracted for r in results],
            lengths=[len(out.tokens[r]) for r in rows], errors=[r.error for r in results], responses=texts,
        ))
    return records
