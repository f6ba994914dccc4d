"""The LOSSES registry and its protocol.

An RL loss is a pure function of tensors (no model, no optimizer) with one call signature::

    loss_fn(token_logp, ref_token_logp, mask, rewards, group, **hyperparameters) -> LossOutput

    token_logp      (B, T) log-probs of the response tokens under the current policy (differentiable)
    ref_token_logp  (B, T) the same under pi_{theta_i}, the policy that sampled them (no gradient)
    mask            (B, T) bool, the tokens that count in the loss
    rewards         (B,)   scalar reward per response
    group           (B,)   prompt id per response (its k responses share one)

Each loss reduces to what it needs (sequence sums, per-token ratios) and returns a scalar ``loss`` to
minimise and float ``metrics`` to log; each is unit-tested against hand-computed numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from vlrl.registry import Registry


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    metrics: dict[str, float] = field(default_factory=dict)


class LossFn(Protocol):
    def __call__(self, token_logp: torch.Tensor, ref_token_logp: torch.Tensor, mask: torch.Tensor,
                 rewards: torch.Tensor, group: torch.Tensor, **hyper) -> LossOutput: ...


def sequence_logp(token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) token log-probs, (B, T) mask -> (B,) sum over the masked tokens."""
    return (token_logp * mask.to(token_logp.dtype)).sum(-1)


def kl_k3(token_logp: torch.Tensor, ref_token_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Summed k3 estimate of KL(pi_ref || pi) over the masked tokens (Schulman's ``exp(d) - 1 - d``,
    d = log pi - log pi_ref per token): >= 0 per token, and unbiased for tokens sampled from pi_ref.
    (B, T) x 3 -> scalar (no gradient)."""
    d = (token_logp.detach() - ref_token_logp.detach())[mask]
    return (torch.exp(d) - 1 - d).sum()


LOSSES: Registry[LossFn] = Registry("loss", "vlrl.losses")
