"""The Kimi k1.5 online policy mirror descent loss (reference §2.2-2.3, Eq. 3).

For each prompt x, k responses y_j are sampled from pi_{theta_i} (the policy at the start of iteration i,
which is the reference). The surrogate

    L(theta) = E_j [ ( r_j - tau log Z - tau * log( pi_theta(y_j|x) / pi_{theta_i}(y_j|x) ) )^2 ]

has the gradient (up to a factor -1/(2 tau)) of

    loss = -(1/k) sum_j [ (r_j - rbar) * logp_j  -  (tau/2) * (logp_j - logp_ref_j)^2 ]

with logp_j the sequence log-probability of response j (sum of its token log-probs; prompt and image
tokens excluded), logp_ref_j the same under pi_{theta_i} (held fixed), and rbar = tau log Z estimated by
the mean reward of the k samples (what k1.5 uses) or, optionally, by tau * log mean_j exp(r_j / tau).
``baseline_scale`` s < 1 subtracts s * rbar instead: a prompt whose k samples are all right then still
pushes them up (advantage (1 - s) * r), which the mean baseline never does; s = 0 with
``negative_weight`` 0 is rejection-sampling fine-tuning on the iteration's own correct samples.
It is policy gradient with a mean-reward baseline plus an l2 penalty on the log-ratio to the
iteration's starting policy; on an iteration's first step logp == logp_ref and the penalty vanishes.
"""

from __future__ import annotations

import torch

from vlrl.algos.base import LOSSES, LossOutput, sequence_logp
from vlrl.algos.group import group_count, group_logmeanexp, group_mean, group_std


@LOSSES.register("kimi")
def kimi_loss(token_logp: torch.Tensor, ref_token_logp: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
              group: torch.Tensor, tau: float = 0.1, baseline: str = "mean", length_normalize: bool = False,
              negative_weight: float = 1.0, std_normalize: bool = False, eps: float = 1e-6,
              baseline_scale: float = 1.0, positive_share: bool = False) -> LossOutput:
    """Args (shapes in ``vlrl/algos/base.py``):
        tau: regularisation strength.
        baseline: "mean" (k1.5's choice) or "logmeanexp" (the exact tau log Z estimate).
        length_normalize: use per-token mean log-probs (logp / |y|) in both terms, for long responses.
        negative_weight: multiplies the advantage of below-baseline responses (1 = the paper's loss; 0 only
            pulls toward better-than-average responses, like rejection-sampling fine-tuning).
        std_normalize: divide each advantage by its group's reward std (+ eps), as GRPO does; not in the
            paper. Groups with rare successes or rare failures then weigh more than balanced ones.
        baseline_scale: multiplies the baseline (1 = the paper's; 0 = no baseline, REINFORCE).
        positive_share: a prompt's above-baseline responses share the weight of k/2 responses (each advantage
            times (k/2) / their count): a prompt the policy solves 4 times in 4 no longer pushes up 4x as
            much as one it solves once. Not in the paper.

    Returns:
        loss (scalar) and metrics: advantage mean/abs-mean, log-ratio mean/abs-max, pg and reg terms.
    """
    adv = kimi_advantages(rewards, group, tau, baseline, negative_weight, std_normalize, eps, baseline_scale,
                          positive_share)  # (B,)
    logp, logp_ref = sequence_logp(token_logp, mask), sequence_logp(ref_token_logp, mask)  # (B,)
    if length_normalize:
        lengths = mask.sum(-1).clamp(min=1).to(logp.dtype)
        logp, logp_ref = logp / lengths, logp_ref / lengths
    log_ratio = logp - logp_ref.detach()  # (B,)
    pg = adv * logp
    reg = 0.5 * tau * log_ratio ** 2
    loss = -(pg - reg).mean()
    return LossOutput(loss, {
        "adv_mean": float(adv.mean()), "adv_abs_mean": float(adv.abs().mean()),
        "log_ratio_mean": float(log_ratio.detach().mean()), "log_ratio_abs_max": float(log_ratio.detach().abs().max()),
        "pg_term": float(pg.detach().mean()), "reg_term": float(reg.detach().mean()),
    })


def kimi_advantages(rewards: torch.Tensor, group: torch.Tensor, tau: float = 0.1, baseline: str = "mean",
                    negative_weight: float = 1.0, std_normalize: bool = False, eps: float = 1e-6,
                    baseline_scale: float = 1.0, positive_share: bool = False) -> torch.Tensor:
    """(B,) rewards and group ids -> (B,) the advantages :func:`kimi_loss` weights log-probs by (no gradient):
    r - baseline_scale * rbar, divided by the group's std under ``std_normalize``, below-baseline ones times
    ``negative_weight``, above-baseline ones times (k/2) / (their number in the group) under
    ``positive_share`` (k: the group's size)."""
    if baseline == "mean":
        rbar = group_mean(rewards, group)
    elif baseline == "logmeanexp":
        rbar = group_logmeanexp(rewards, group, tau)
    else:
        raise ValueError(f"kimi loss: baseline '{baseline}' is not 'mean' or 'logmeanexp'")
    if std_normalize and baseline_scale != 1.0:  # an all-equal group keeps (1 - s) * r over a std of 0
        raise ValueError(f"kimi loss: std_normalize needs baseline_scale 1 (got {baseline_scale}): a group whose "
                         f"rewards are all equal has std 0 and would keep the advantage (1 - s) * r, divided by eps")
    adv = (rewards - baseline_scale * rbar).detach()
    if std_normalize:
        adv = adv / (group_std(rewards, group) + eps)
    if negative_weight != 1.0:
        adv = torch.where(adv < 0, negative_weight * adv, adv)
    if positive_share:
        k = group_count(group).to(adv.dtype)  # (B,)
        above = group_mean((adv > 0).to(adv.dtype), group) * k  # (B,) above-baseline responses in the group
        adv = torch.where(adv > 0, adv * (k / 2) / above.clamp(min=1), adv)
    return adv


def kimi_inert_rows(rewards: torch.Tensor, group: torch.Tensor, length_normalize: bool = False,
                    **advantage_kwargs: object) -> torch.Tensor:
    """(B,) bool: the responses whose advantage is 0 (all-equal groups; with ``negative_weight`` 0 every
    response at or below its group's baseline). Their only term is the tau/2 squared log-ratio, which is 0
    on an iteration's first pass (logp == logp_ref), so the update may skip their forward and backward
    (``UpdateConfig.skip_inert``): exact on the first pass, the regulariser of these rows dropped after.
    Takes :func:`kimi_loss`'s keyword arguments; all but ``length_normalize`` go to :func:`kimi_advantages`."""
    return kimi_advantages(rewards, group, **advantage_kwargs) == 0


kimi_loss.inert_rows = kimi_inert_rows  # type: ignore[attr-defined]  # read by vlrl.algos.update
