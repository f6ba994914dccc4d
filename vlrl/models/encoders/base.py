"""The vision-encoder contract (LLaVA's vision-tower contract, made explicit).

An ENCODERS builder takes an :class:`~vlrl.config.EncoderConfig` and returns a :class:`VisionEncoder`:

- ``forward(pixel_values (B, 3, H, W)) -> (B, N, D)`` patch-token features,
- ``hidden_size`` (D) and ``num_tokens`` (N), ``grid_size`` ((h, w) with h*w == N, or None),
- ``image_transform()``: its own preprocessing (an ``ImageTransform``, saved with the processor),
- ``export_config()``: an EncoderConfig that rebuilds the architecture with no weights and no download
  (``save_pretrained`` stores it; the weights come from the checkpoint),
- ``freeze(frozen)``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from processors.image import ImageTransform
from vlrl.config import EncoderConfig
from vlrl.registry import Registry


class VisionEncoder(nn.Module):
    """Base class for encoders; plugins may subclass it or provide the same attributes."""

    hidden_size: int
    num_tokens: int
    grid_size: tuple[int, int] | None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, N, D)
        raise NotImplementedError

    def image_transform(self) -> ImageTransform:
        raise NotImplementedError

    def export_config(self) -> EncoderConfig:
        raise NotImplementedError

    def freeze(self, frozen: bool = True) -> None:
        for p in self.parameters():
            p.requires_grad_(not frozen)

    def gradient_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass instead of storing them (less memory, the same
        gradients); an encoder that cannot says so by name."""
        raise ValueError(f"model.gradient_checkpointing: the {type(self).__name__} encoder does not support it")


class EncoderBuilder(Protocol):
    def __call__(self, cfg: EncoderConfig) -> VisionEncoder: ...


ENCODERS: Registry[EncoderBuilder] = Registry("encoder", "vlrl.encoders")


def resolve_layer(index: int, num_layers: int, who: str) -> int:
    """Turn a possibly negative block index into 0..num_layers-1, with a clear error."""
    i = index if index >= 0 else num_layers + index
    if not 0 <= i < num_layers:
        raise ValueError(f"{who}: feature_layer {index} is out of range for {num_layers} blocks")
    return i
