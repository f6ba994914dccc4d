"""A minimal vlrl encoder plugin: one patchify convolution plus a learned position embedding.

The whole contract (``vlrl/models/encoders/base.py``): ``forward`` maps (B, 3, H, W) pixels to (B, N, D)
patch features; ``hidden_size`` (D), ``num_tokens`` (N) and ``grid_size`` describe them;
``image_transform()`` is the preprocessing saved with the processor; ``export_config()`` rebuilds the
architecture without weights (the checkpoint supplies them). Sizes come from ``model.encoder.kwargs``::

    model:
      encoder:
        name: conv_patch
        kwargs: {image_size: 224, patch_size: 16, width: 256, resize_mode: squash}
"""

from __future__ import annotations

import torch
from torch import nn

from processors.image import ImageTransform
from vlrl.config import EncoderConfig
from vlrl.models.encoders.base import VisionEncoder

__all__ = ["ConvPatchEncoder", "build"]


class ConvPatchEncoder(VisionEncoder):
    """(B, 3, S, S) -> (B, (S/P)^2, W): non-overlapping P x P patches, each projected to W features."""

    def __init__(self, cfg: EncoderConfig, image_size: int = 224, patch_size: int = 16, width: int = 256,
                 resize_mode: str = "squash"):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"conv_patch: image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.cfg = cfg
        side = image_size // patch_size
        self.image_size, self.resize_mode = image_size, resize_mode
        self.hidden_size, self.grid_size, self.num_tokens = width, (side, side), side * side
        self.patchify = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        self.position = nn.Parameter(torch.zeros(1, side * side, width))
        self.norm = nn.LayerNorm(width)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patchify(pixel_values).flatten(2).transpose(1, 2)  # (B, N, W)
        return self.norm(x + self.position)

    def image_transform(self) -> ImageTransform:
        return ImageTransform(size=self.image_size, resize_mode=self.resize_mode)

    def export_config(self) -> EncoderConfig:
        return EncoderConfig(name="conv_patch", arch=None, kwargs=dict(self.cfg.kwargs))


def build(cfg: EncoderConfig) -> ConvPatchEncoder:
    """The ENCODERS builder vlrl calls with ``model.encoder``; unknown kwargs are an error."""
    kwargs = dict(cfg.kwargs or {})
    allowed = {"image_size", "patch_size", "width", "resize_mode"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"conv_patch: unknown model.encoder.kwargs {unknown}; known: {sorted(allowed)}")
    return ConvPatchEncoder(cfg, **kwargs)
