"""Generate n responses per prompt and score them: the evaluation loop shared by `vlrl eval` and stages."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm import tqdm

from processors.collate import collate_generation
from processors.processor import MultimodalProcessor
from vlrl.eval.metrics import PromptRecord
from vlrl.models.generation import SamplingParams, generate
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
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        enc = [processor.encode(s, system_prompt=system_prompt) for s in chunk]
        batch = collate_generation(enc, processor.pad_token_id).to(model.device)
        out = generate(model, batch, params, processor.eos_token_id, gen)
        k = params.num_samples
        for i, s in enumerate(chunk):
            rows = range(i * k, (i + 1) * k)
            texts = [processor.decode(out.tokens[r]) for r in rows]
            results = [reward_fn(t, s) for t in texts]
            records.append(PromptRecord(
                id=s.id, modality=s.modality, domain=s.domain, difficulty=s.difficulty, pair_id=s.pair_id,
                correct=[r.reward >= 1.0 for r in results], answers=[r.extracted for r in results],
                lengths=[len(out.tokens[r]) for r in rows], errors=[r.error for r in results], responses=texts,
            ))
        bar.update(len(chunk))
    bar.close()
    return records
