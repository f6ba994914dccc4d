"""The LOSSES registry and its protocol.

A loss is a pure function of tensors (no model, no optimizer): it takes keyword tensors and returns a
:class:`LossOutput` with a scalar ``loss`` to minimise and float ``metrics`` to log. Being pure, each is
unit-tested against hand-computed numbers.
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
    def __call__(self, **tensors: torch.Tensor) -> LossOutput: ...


LOSSES: Registry[LossFn] = Registry("loss", "vlrl.losses")
