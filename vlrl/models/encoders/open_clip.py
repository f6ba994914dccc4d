"""``open_clip`` encoder: any open_clip ViT, by architecture name or inline ``vision_cfg`` dict.

``arch: ViT-B-16`` uses open_clip's bundled model config; ``arch: {layers: 2, width: 64, patch_size: 8,
image_size: 32}`` builds a tiny ViT with no file at all. ``pretrained`` is an open_clip tag
(``laion2b_s34b_b88k``, needs the hub), a local weights file (a full CLIP checkpoint or the visual tower
alone; .safetensors or a torch state dict), or null for random init. Features are the patch tokens of
block ``feature_layer`` (class / register tokens dropped), before the final norm and pooling.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from processors.image import CLIP_MEAN, CLIP_STD, ImageTransform
from vlrl.config import EncoderConfig
from vlrl.models.encoders.base import ENCODERS, VisionEncoder, resolve_layer


def _vision_cfg(arch: Any) -> tuple[dict, int, bool]:
    """(vision_cfg, embed_dim, quick_gelu) for an arch name or inline dict."""
    import open_clip

    if isinstance(arch, dict):
        arch = copy.deepcopy(arch)
        return arch, int(arch.pop("embed_dim", arch.get("width", 64))), bool(arch.pop("quick_gelu", False))
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(
            f"open_clip encoder: unknown architecture '{arch}'. Use a name from open_clip.list_models() "
            f"or an inline dict such as {{layers: 2, width: 64, patch_size: 8, image_size: 32}}"
        )
    if "timm_model_name" in cfg["vision_cfg"] and cfg["vision_cfg"]["timm_model_name"]:
        raise ValueError(f"open_clip encoder: '{arch}' is a timm tower; only open_clip ViTs are supported")
    return copy.deepcopy(cfg["vision_cfg"]), int(cfg["embed_dim"]), bool(cfg.get("quick_gelu", False))


def _load_weights(tower: torch.nn.Module, path: Path) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    missing, unexpected = tower.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"open_clip encoder: weights file '{path}' lacks {len(missing)} tensors, e.g. {missing[:3]}")


class OpenClipEncoder(VisionEncoder):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        vision_cfg, embed_dim, quick_gelu = _vision_cfg(cfg.arch)
        self.cfg = cfg
        pretrained = cfg.pretrained
        if pretrained and not Path(pretrained).exists():
            if isinstance(cfg.arch, dict):
                raise ValueError(
                    f"open_clip encoder: pretrained '{pretrained}' is not a local file, and an inline arch "
                    f"has no open_clip tags; give a weights file or an arch name"
                )
            import open_clip

            self.tower = open_clip.create_model(cfg.arch, pretrained=pretrained).visual
        else:
            self.tower = _build_vision_tower(embed_dim, CLIPVisionCfg(**vision_cfg), quick_gelu=quick_gelu)
            if pretrained:
                _load_weights(self.tower, Path(pretrained))
        self.grid_size = tuple(self.tower.grid_size)
        self.num_tokens = self.grid_size[0] * self.grid_size[1]
        self.hidden_size = int(vision_cfg.get("width", 768))
        self.num_layers = len(self.tower.transformer.resblocks)
        self.layer = resolve_layer(cfg.feature_layer, self.num_layers, "open_clip encoder")
        self._image_size = int(self.tower.image_size[0])
        # drop the blocks after the feature layer, the final norm and the pooled head: unused parameters
        # waste memory and break DDP's gradient reduction
        self.tower.prune_intermediate_layers([self.layer], prune_norm=True, prune_head=True)
        self.freeze(cfg.freeze)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.tower.forward_intermediates(
            pixel_values, indices=[self.layer], output_fmt="NLC", intermediates_only=True, stop_early=True
        )
        return out["image_intermediates"][0]  # (B, N, D), patch tokens only

    def gradient_checkpointing(self, enable: bool = True) -> None:
        self.tower.set_grad_checkpointing(enable)

    def image_transform(self) -> ImageTransform:
        mean = self.cfg.kwargs.get("mean", CLIP_MEAN)
        std = self.cfg.kwargs.get("std", CLIP_STD)
        resize_mode = self.cfg.kwargs.get("resize_mode", "shortest")
        return ImageTransform(size=self._image_size, mean=tuple(mean), std=tuple(std), resize_mode=resize_mode)

    def export_config(self) -> EncoderConfig:
        return EncoderConfig(
            name="open_clip", arch=copy.deepcopy(self.cfg.arch), pretrained=None,
            feature_layer=self.cfg.feature_layer, freeze=self.cfg.freeze, kwargs=dict(self.cfg.kwargs),
        )


@ENCODERS.register("open_clip")
def build_open_clip(cfg: EncoderConfig) -> OpenClipEncoder:
    return OpenClipEncoder(cfg)
