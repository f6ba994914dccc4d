"""Trajectories -> a scoring batch whose response mask covers only the tokens that count in the loss."""

from __future__ import annotations

from typing import Sequence

import torch

from processors.collate import Batch, collate_scoring
from processors.processor import MultimodalProcessor
from vlrl.rollout.buffer import Trajectory


def scoring_batch(processor: MultimodalProcessor, trajs: Sequence[Trajectory], iteration: int,
                  mask_old_segments: bool) -> Batch:
    """Prompt + full response (all segments) as context; ``response_mask`` is False on the prompt, the
    padding and, with ``mask_old_segments``, on tokens written by earlier iterations' policies."""
    if not trajs:  # a process with nothing to train on this iteration still takes part in the update
        return Batch(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1, dtype=torch.long), None, [],
                     response_mask=torch.zeros(0, 1, dtype=torch.bool))
    enc = [processor.encode(t.sample, t.tokens, add_eos=False) for t in trajs]
    batch = collate_scoring(enc, processor.pad_token_id)
    for i, (e, t) in enumerate(zip(enc, trajs)):
        for j, keep in enumerate(t.loss_mask(iteration, mask_old_segments)):
            if not keep:
                batch.response_mask[i, e.prompt_len + j] = False
    return batch


def sampled_logprobs(trajs: Sequence[Trajectory], batch: Batch, iteration: int) -> torch.Tensor:
    """(B, T-1) the log-probs the sampler recorded for the tokens written in ``iteration``, at the positions
    where ``response_logprobs`` scores them (response token j of row i predicts position prompt_len + j,
    scored at index prompt_len + j - 1); NaN elsewhere (prompt, padding, older segments)."""
    out = torch.full((len(trajs), batch.input_ids.shape[1] - 1), float("nan"))
    for i, t in enumerate(trajs):
        base = batch.prompt_lens[i] - 1
        for seg in t.segments:
            if seg.iteration == iteration and seg.logprobs is not None:
                out[i, base + seg.start : base + seg.end] = torch.tensor(seg.logprobs, dtype=torch.float32)
    return out
