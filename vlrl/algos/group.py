"""Per-prompt group statistics: every RL loss compares a response with the other responses to its prompt."""

from __future__ import annotations

from typing import Sequence

import torch


def group_rows(group: Sequence[int] | torch.Tensor) -> list[list[int]]:
    """(B,) group ids -> the row indices of each group, groups in order of first appearance."""
    rows: dict[int, list[int]] = {}
    for i, g in enumerate(group.tolist() if isinstance(group, torch.Tensor) else group):
        rows.setdefault(g, []).append(i)
    return list(rows.values())


def group_mean(values: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """(B,) values, (B,) group ids -> (B,) the mean of each element's group."""
    ids, inverse = torch.unique(group, return_inverse=True)
    sums = torch.zeros(len(ids), dtype=values.dtype, device=values.device).index_add_(0, inverse, values)
    counts = torch.zeros(len(ids), dtype=values.dtype, device=values.device).index_add_(0, inverse, torch.ones_like(values))
    return (sums / counts)[inverse]


def group_count(group: torch.Tensor) -> torch.Tensor:
    """(B,) group ids -> (B,) size of each element's group."""
    _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
    return counts[inverse]


def group_std(values: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B,) population standard deviation of each element's group."""
    mean = group_mean(values, group)
    return group_mean((values - mean) ** 2, group).sqrt()


def group_logmeanexp(values: torch.Tensor, group: torch.Tensor, tau: float) -> torch.Tensor:
    """(B,) -> (B,) tau * log( mean_j exp(values_j / tau) ) over each group (k1.5's exact tau log Z)."""
    ids, inverse = torch.unique(group, return_inverse=True)
    out = torch.empty(len(ids), dtype=values.dtype, device=values.device)
    for g in range(len(ids)):
        v = values[inverse == g] / tau
        out[g] = tau * (torch.logsumexp(v, 0) - torch.log(torch.tensor(float(len(v)), dtype=values.dtype)))
    return out[inverse]
