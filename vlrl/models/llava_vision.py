"""The vision tower of a vlrl model in transformers' layout, for the LLaVA export.

- ``hf_vision``: already a transformers tower; its config is copied with the number of blocks vlrl kept.
- ``open_clip`` (the embedded default): a plain open_clip ViT is CLIP's vision transformer up to names.
  The class and positional embeddings, the patch convolution and the pre-norm map one to one. open_clip's
  fused attention input projection splits into CLIP's q / k / v projections, and its GELU (or QuickGELU)
  becomes ``hidden_act``. An open_clip tower with anything CLIP lacks is an error naming it: layer scale,
  an attention pooler, or another activation.

``vision_tower(model, state)`` returns ``(CLIPVisionConfig-like config, {transformers name: tensor},
has_class_token)``, taking tensors from ``state`` (the model's state dict, LoRA merged) so that what is
exported is what the model computes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def vision_tower(model, state: dict[str, torch.Tensor]):
    name = model.config.encoder.name
    if name == "hf_vision":
        return _hf_tower(model, state)
    if name == "open_clip":
        return _open_clip_tower(model.encoder, state)
    raise ValueError(f"export: model.encoder.name '{name}' has no LLaVA equivalent (LLaVA takes a CLIP / SigLIP "
                     f"vision tower: model.encoder.name hf_vision, or a plain open_clip ViT)")


def _hf_tower(model, state):
    tower = model.encoder.model
    vision = copy.deepcopy(tower.config)  # a copy: building a model from a config edits it
    vision.num_hidden_layers = model.encoder.hs_index  # the blocks vlrl kept, up to its feature layer
    if hasattr(vision, "vision_use_head"):
        vision.vision_use_head = False
    has_cls = hasattr(getattr(tower, "vision_model", tower).embeddings, "class_embedding")
    prefix = "encoder.model."
    return vision, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, has_cls


def _activation(block) -> str:
    act = block.mlp.gelu
    if type(act).__name__ == "QuickGELU":
        return "quick_gelu"
    if isinstance(act, nn.GELU) and act.approximate == "none":
        return "gelu"
    raise ValueError(f"export: the open_clip encoder's activation {type(act).__name__} has no CLIP equivalent")


def _check_plain(tower) -> None:
    for i, b in enumerate(tower.transformer.resblocks):
        if not (isinstance(b.ls_1, nn.Identity) and isinstance(b.ls_2, nn.Identity)):
            raise ValueError(f"export: open_clip block {i} has layer scale (ls_1 / ls_2), which CLIP lacks")
    if getattr(tower, "attn_pool", None) is not None:
        raise ValueError("export: the open_clip encoder has an attention pooler, which CLIP lacks")


def _open_clip_tower(enc, state):
    from transformers import CLIPVisionConfig

    tower = enc.tower
    _check_plain(tower)
    blocks = tower.transformer.resblocks
    width = tower.conv1.out_channels
    cfg = CLIPVisionConfig(hidden_size=width, intermediate_size=blocks[0].mlp.c_fc.out_features,
                           num_hidden_layers=len(blocks), num_attention_heads=blocks[0].attn.num_heads,
                           image_size=enc._image_size, patch_size=tower.conv1.kernel_size[0],
                           hidden_act=_activation(blocks[0]), layer_norm_eps=blocks[0].ln_1.eps, num_channels=3)
    s = lambda k: state[f"encoder.tower.{k}"]  # noqa: E731
    out = {"embeddings.class_embedding": s("class_embedding"), "embeddings.patch_embedding.weight": s("conv1.weight"),
           "embeddings.position_embedding.weight": s("positional_embedding"),
           "pre_layrnorm.weight": s("ln_pre.weight"), "pre_layrnorm.bias": s("ln_pre.bias")}
    for i in range(len(blocks)):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for part, w in zip(("q", "k", "v"), s(src + "attn.in_proj_weight").chunk(3)):
            out[dst + f"self_attn.{part}_proj.weight"] = w
        for part, b in zip(("q", "k", "v"), s(src + "attn.in_proj_bias").chunk(3)):
            out[dst + f"self_attn.{part}_proj.bias"] = b
        for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                             ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            for leaf in ("weight", "bias"):
                out[f"{dst}{theirs}.{leaf}"] = s(f"{src}{ours}.{leaf}")
    return cfg, out, True
