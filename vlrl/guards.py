"""Nothing non-finite is trained on or saved.

A NaN or infinite loss, gradient norm, reward or weight stops the run at once with a message naming the
stage, the step and (for rewards) the samples. The checks sit *before* the optimizer step and before
every save, so the weights in memory and the latest checkpoint on disk are the last good ones and a
resume starts from them. ``vlrl`` prints the message as ``vlrl: error: ...`` and exits non-zero.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

HINT = "lower optim.lr, check the data and the reward; the last checkpoint on disk is the last good one"


class NonFiniteError(FloatingPointError):
    """A loss, gradient, reward or weight is NaN or infinite."""


def require_finite(what: str, value: float, where: str, hint: str = HINT) -> None:
    """Raise :class:`NonFiniteError` when ``value`` (a Python float) is NaN or infinite.

    ``what`` names the quantity ("loss", "gradient norm"), ``where`` the stage and step ("rl iteration 3,
    optimizer step 2").
    """
    if not math.isfinite(value):
        raise NonFiniteError(f"{where}: {what} is {value}; the step was not taken and nothing was saved "
                             f"({hint})")


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the tensors holding any NaN or infinite element (floating tensors only)."""
    return [n for n, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def require_finite_weights(model: torch.nn.Module, where: str) -> None:
    """Raise :class:`NonFiniteError` naming the first parameters of ``model`` that are not finite."""
    bad = nonfinite_tensors(model.named_parameters())
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteError(f"{where}: non-finite weights in {', '.join(bad[:3])}{more}; nothing was saved "
                             f"({HINT})")


def require_finite_rewards(rewards: torch.Tensor, sample_ids: Sequence[str], reward_name: str, where: str) -> None:
    """Raise :class:`NonFiniteError` when a reward of ``rewards`` (B,) is NaN or infinite, naming the
    reward function and up to 5 of the samples it scored so."""
    bad = (~torch.isfinite(rewards)).nonzero().flatten().tolist()
    if bad:
        shown = ", ".join(f"{sample_ids[i]} ({float(rewards[i])})" for i in bad[:5])
        raise NonFiniteError(f"{where}: reward '{reward_name}' returned a non-finite value for {len(bad)} of "
                             f"{len(rewards)} responses, e.g. samples {shown}; nothing was trained on them or saved")
