"""``hf_vision`` encoder: transformers CLIP / SigLIP (or any vision tower with hidden states).

``arch`` is a transformers config dict with ``model_type`` (``clip_vision_model``,
``siglip_vision_model``; a full ``clip`` / ``siglip`` config also works: its vision part is used) for
random init, or a local path / hub id whose config is read. ``pretrained`` is a local path or hub id to
load weights from (a full CLIP/SigLIP checkpoint is fine). Features are the patch tokens of hidden state
``feature_layer`` (the class token is dropped; LLaVA uses -2).
"""

from __future__ import annotations

from typing import Any

import torch

from processors.image import CLIP_MEAN, CLIP_STD, ImageTransform
from vlrl.config import EncoderConfig
from vlrl.models.encoders.base import ENCODERS, VisionEncoder, resolve_layer


def _vision_config(arch: Any) -> Any:
    from transformers import AutoConfig

    if isinstance(arch, dict):
        d = dict(arch)
        if "model_type" not in d:
            raise ValueError("hf_vision encoder: an inline arch dict needs 'model_type' (e.g. siglip_vision_model)")
        cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    else:
        cfg = AutoConfig.from_pretrained(str(arch))
    return getattr(cfg, "vision_config", cfg)


class HFVisionEncoder(VisionEncoder):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        from transformers import MODEL_MAPPING

        vcfg = _vision_config(cfg.arch)
        model_cls = MODEL_MAPPING[type(vcfg)]
        if cfg.pretrained:
            self.model = model_cls.from_pretrained(str(cfg.pretrained))
            vcfg = self.model.config
        else:
            self.model = model_cls(vcfg)
        self.cfg = cfg
        self.vision_config = vcfg
        side = vcfg.image_size // vcfg.patch_size
        self.grid_size = (side, side)
        self.num_tokens = side * side
        self.hidden_size = int(vcfg.hidden_size)
        n_layers = int(vcfg.num_hidden_layers)
        # hidden_states has n_layers + 1 entries (embeddings first); block i's output is entry i + 1
        self.hs_index = resolve_layer(cfg.feature_layer, n_layers, "hf_vision encoder") + 1
        self._prune()
        self.freeze(cfg.freeze)

    def _prune(self) -> None:
        """Drop the blocks after the feature layer, the post-norm and the pooling head (CLIP / SigLIP
        layout): unused parameters waste memory and break DDP's gradient reduction."""
        vm = getattr(self.model, "vision_model", self.model)
        layers = getattr(getattr(vm, "encoder", None), "layers", None)
        if layers is None:
            return
        vm.encoder.layers = layers[: self.hs_index]
        if hasattr(vm, "post_layernorm"):
            vm.post_layernorm = torch.nn.Identity()
        if getattr(vm, "use_head", False):
            vm.use_head = False
            del vm.head

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        hs = out.hidden_states[self.hs_index]  # (B, [1 +] N, D)
        return hs[:, -self.num_tokens :]  # drop the class token where there is one

    def gradient_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_disable()

    def image_transform(self) -> ImageTransform:
        siglip = "siglip" in self.vision_config.model_type
        mean, std = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) if siglip else (CLIP_MEAN, CLIP_STD)
        source = self.cfg.pretrained or (self.cfg.arch if isinstance(self.cfg.arch, str) else None)
        if source:
            try:
                from transformers import AutoImageProcessor

                ip = AutoImageProcessor.from_pretrained(str(source))
                mean, std = tuple(ip.image_mean), tuple(ip.image_std)
            except (OSError, ValueError):
                pass  # no preprocessor_config.json there: keep the family defaults
        kw = self.cfg.kwargs
        return ImageTransform(
            size=int(self.vision_config.image_size),
            mean=tuple(kw.get("mean", mean)),
            std=tuple(kw.get("std", std)),
            resize_mode=kw.get("resize_mode", "squash" if siglip else "shortest"),
        )

    def export_config(self) -> EncoderConfig:
        arch = self.vision_config.to_dict()
        arch = {k: v for k, v in arch.items() if not k.startswith("_") and k not in ("transformers_version",)}
        return EncoderConfig(name="hf_vision", arch=arch, pretrained=None, feature_layer=self.cfg.feature_layer,
                             freeze=self.cfg.freeze, kwargs={**self.cfg.kwargs, **_norm_kwargs(self.image_transform())})


def _norm_kwargs(t: ImageTransform) -> dict:
    # the normalisation read from a checkpoint's preprocessor must survive export without that checkpoint
    return {"mean": list(t.mean), "std": list(t.std), "resize_mode": t.resize_mode}


@ENCODERS.register("hf_vision")
def build_hf_vision(cfg: EncoderConfig) -> HFVisionEncoder:
    return HFVisionEncoder(cfg)
