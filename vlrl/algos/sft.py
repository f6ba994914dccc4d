"""Supervised cross-entropy on response tokens (used by the supervised stages directly; not an RL loss, so
not in LOSSES)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from processors.collate import IGNORE_INDEX
from vlrl.algos.base import LossOutput


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> LossOutput:
    """Mean next-token cross-entropy over the labelled (response) tokens of the batch.

    Args:
        logits: (B, T, V) model outputs; position t predicts token t + 1.
        labels: (B, T) target ids, IGNORE_INDEX on prompt and padding.

    Returns:
        loss = -(1/K) * sum over the K labelled positions of log softmax(logits[t])[labels[t + 1]].
    """
    pred = logits[:, :-1].float()  # (B, T-1, V)
    target = labels[:, 1:]  # (B, T-1)
    n_tokens = int((target != IGNORE_INDEX).sum())
    loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)
    return LossOutput(loss, {"tokens": float(n_tokens)})
