"""Projectors: encoder patch features (B, N, D_enc) -> LLM input embeddings (B, M, D_llm).

Every PROJECTORS builder has the signature of :class:`ProjectorBuilder` and returns a module with a
``num_tokens`` attribute (M, the embeddings per image the processor must reserve).

- ``linear``: one Linear (LLaVA-1).
- ``mlp``: Linear-GELU-Linear (LLaVA-1.5).
- ``pixel_shuffle``: merges each ``factor x factor`` block of neighbouring patches into one token
  (channels concatenated), then an MLP: M = N / factor^2, trading image detail for speed.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from einops import rearrange
from torch import nn

from vlrl.registry import Registry


class ProjectorBuilder(Protocol):
    def __call__(self, in_dim: int, out_dim: int, num_in_tokens: int, **kwargs) -> nn.Module: ...


PROJECTORS: Registry[ProjectorBuilder] = Registry("projector", "vlrl.projectors")


class _TokenwiseProjector(nn.Module):
    def __init__(self, net: nn.Module, num_tokens: int) -> None:
        super().__init__()
        self.net = net
        self.num_tokens = num_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D_in) -> (B, N, D_out)
        return self.net(x)


def _mlp(in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden or out_dim), nn.GELU(), nn.Linear(hidden or out_dim, out_dim))


@PROJECTORS.register("linear")
def build_linear(in_dim: int, out_dim: int, num_in_tokens: int) -> nn.Module:
    return _TokenwiseProjector(nn.Linear(in_dim, out_dim), num_in_tokens)


@PROJECTORS.register("mlp")
def build_mlp(in_dim: int, out_dim: int, num_in_tokens: int, hidden_dim: int | None = None) -> nn.Module:
    return _TokenwiseProjector(_mlp(in_dim, out_dim, hidden_dim), num_in_tokens)


class PixelShuffleProjector(nn.Module):
    """(B, h*w, D) -> (B, (h/f)*(w/f), f*f*D) -> MLP -> (B, M, D_out)."""

    def __init__(self, in_dim: int, out_dim: int, num_in_tokens: int, factor: int = 2,
                 hidden_dim: int | None = None) -> None:
        super().__init__()
        side = math.isqrt(num_in_tokens)
        if side * side != num_in_tokens or side % factor:
            raise ValueError(
                f"pixel_shuffle projector: {num_in_tokens} image tokens is not a square grid divisible by "
                f"factor {factor}"
            )
        self.side, self.factor = side, factor
        self.num_tokens = (side // factor) ** 2
        self.net = _mlp(in_dim * factor * factor, out_dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        x = rearrange(x, "b (h fh w fw) d -> b (h w) (fh fw d)", h=self.side // f, fh=f, w=self.side // f, fw=f)
        return self.net(x)


@PROJECTORS.register("pixel_shuffle")
def build_pixel_shuffle(in_dim: int, out_dim: int, num_in_tokens: int, factor: int = 2,
                        hidden_dim: int | None = None) -> nn.Module:
    return PixelShuffleProjector(in_dim, out_dim, num_in_tokens, factor, hidden_dim)
