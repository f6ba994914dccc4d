"""GRPO (clipped ratio, group-normalised advantage, optional k3 KL) and RLOO, for side-by-side comparison.

GRPO (Shao et al. 2024): A_j = (r_j - mean_g r) / (std_g r + eps); per token t of response j
    ratio = exp(logp_t - logp_old_t),  surrogate = min(ratio * A_j, clip(ratio, 1-e, 1+e) * A_j)
    kl_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1          (the k3 estimator, >= 0)
    loss = mean_j [ (1/|y_j|) sum_t ( -surrogate + beta * kl_t ) ]

RLOO (Ahmadian et al. 2024): A_j = r_j - mean_{i != j} r_i = k/(k-1) * (r_j - mean_g r);
    loss = -mean_j A_j * logp_j   (sequence log-probs).
"""

from __future__ import annotations

import torch

from vlrl.algos.base import LOSSES, LossOutput, sequence_logp
from vlrl.algos.group import group_count, group_mean, group_std


@LOSSES.register("grpo")
def grpo_loss(token_logp: torch.Tensor, ref_token_logp: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
              group: torch.Tensor, clip_eps: float = 0.2, kl_coef: float = 0.0, eps: float = 1e-6) -> LossOutput:
    """Args (shapes in ``vlrl/algos/base.py``): ``ref_token_logp`` are the sampling-time log-probs, used
    both as pi_old in the ratio and as the KL reference (the policy at the start of the iteration)."""
    old_token_logp = ref_token_logp
    adv = ((rewards - group_mean(rewards, group)) / (group_std(rewards, group) + eps)).detach()  # (B,)
    m = mask.to(token_logp.dtype)
    ratio = torch.exp((token_logp - old_token_logp.detach()) * m)  # (B, T); 1 outside the mask
    surr = torch.minimum(ratio * adv[:, None], ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv[:, None])
    per_tok = -surr
    kl = torch.zeros_like(per_tok)
    if kl_coef > 0:
        d = (ref_token_logp.detach() - token_logp) * m
        kl = torch.exp(d) - d - 1
        per_tok = per_tok + kl_coef * kl
    n = m.sum(1).clamp(min=1)
    loss = ((per_tok * m).sum(1) / n).mean()
    clipped = ((ratio - 1).abs() > clip_eps) & mask
    return LossOutput(loss, {"adv_abs_mean": float(adv.abs().mean()), "clip_frac": float(clipped.sum() / m.sum().clamp(min=1)),
                             "kl": float((kl * m).sum() / m.sum().clamp(min=1))})


@LOSSES.register("rloo")
def rloo_loss(token_logp: torch.Tensor, ref_token_logp: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
              group: torch.Tensor) -> LossOutput:
    """Args (shapes in ``vlrl/algos/base.py``). Uses sequence log-probs. A prompt with a single finished
    response this iteration (possible with partial rollouts) has no leave-one-out baseline: advantage 0."""
    logp = sequence_logp(token_logp, mask)
    k = group_count(group).to(rewards.dtype)
    scale = torch.where(k > 1, k / (k - 1).clamp(min=1), torch.zeros_like(k))
    adv = (scale * (rewards - group_mean(rewards, group))).detach()
    return LossOutput(-(adv * logp).mean(), {"adv_abs_mean": float(adv.abs().mean())})
