"""DPO (Rafailov et al. 2023) as a LOSSES entry, for long2short preference pairs (k1.5 §2.4).

Each pair is a group of two rows: the chosen response (reward 1) and the rejected one (reward 0). With
sequence log-probs logp (sum over response tokens) and the frozen reference's ref_logp,

    margin = beta * [ (logp_c - ref_c) - (logp_r - ref_r) ]
    loss   = mean over pairs of  -log sigmoid(margin)

The reference log-probs come from the same scoring path as logp, computed once before training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlrl.algos.base import LOSSES, LossOutput, sequence_logp


@LOSSES.register("dpo")
def dpo_loss(token_logp: torch.Tensor, ref_token_logp: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
             group: torch.Tensor, beta: float = 0.1) -> LossOutput:
    """Args (shapes in ``vlrl/algos/base.py``): ``group`` is the pair id, ``rewards`` 1 for the chosen
    and 0 for the rejected row of each pair.

    Returns:
        loss (scalar) and metrics: preference accuracy (margin > 0), mean margin, chosen / rejected
        implicit rewards beta * (logp - ref_logp).
    """
    chosen = rewards > 0.5
    uniq, inv = torch.unique(group, return_inverse=True)
    n_chosen = torch.zeros(len(uniq), dtype=torch.long, device=group.device).index_add(0, inv, chosen.long())
    n_rows = torch.bincount(inv, minlength=len(uniq))
    if not (bool((n_rows == 2).all()) and bool((n_chosen == 1).all())):
        raise ValueError("dpo loss: every pair (group) needs exactly one chosen (reward 1) and one rejected row")
    implicit = beta * (sequence_logp(token_logp, mask) - sequence_logp(ref_token_logp, mask).detach())  # (B,)
    sign = chosen.to(implicit.dtype) * 2 - 1
    margin = torch.zeros(len(uniq), dtype=implicit.dtype, device=implicit.device).index_add(0, inv, implicit * sign)
    loss = -F.logsigmoid(margin).mean()
    return LossOutput(loss, {
        "pref_accuracy": float((margin > 0).float().mean()), "margin": float(margin.detach().mean()),
        "chosen_reward": float(implicit.detach()[chosen].mean()),
        "rejected_reward": float(implicit.detach()[~chosen].mean()),
    })
