"""transformers' LLaVA layout in and out: one mapping of parameter names and configs.

vlrl's model is LLaVA's architecture: a Hugging Face vision tower (``hf_vision`` encoder), the ``mlp``
projector (Linear - GELU - Linear) and a causal LM, image features scattered at the image token. So

- ``import_llava(path)`` builds a VisionLanguageModel from a ``LlavaForConditionalGeneration`` directory
  (or a hub id in the local cache), with the checkpoint's own tokenizer, chat template and image token;
- ``export_llava(model, processor, out)`` writes a native transformers LLaVA directory
  (``config.json`` + safetensors with transformers' key names + the tokenizer), which
  ``LlavaForConditionalGeneration.from_pretrained`` loads with no vlrl installed.

Parameter names (vlrl <-> transformers 5):

    encoder.model.<k>       <-> model.vision_tower.<k>
    projector.net.0.<k>     <-> model.multi_modal_projector.linear_1.<k>
    projector.net.2.<k>     <-> model.multi_modal_projector.linear_2.<k>
    llm.model.<k>           <-> model.language_model.<k>
    llm.lm_head.<k>         <-> lm_head.<k>

vlrl keeps only the vision blocks up to its feature layer, so an export has that many blocks and
``vision_feature_layer: -1``: the same features. A plain open_clip ViT (the embedded default) is written as
CLIP's vision tower (``llava_vision.py``). What LLaVA cannot represent (another ``model_type``, several
feature layers, a projector activation other than GELU, a plugin encoder, a linear or pixel-shuffle
projector) is an error naming the field, never a partial load.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from processors.image import HFImageTransform
from vlrl.config import EncoderConfig, LLMConfig, ModelConfig, ProjectorConfig, TokenizerConfig

PREFIXES = (  # (vlrl, transformers)
    ("encoder.model.", "model.vision_tower."),
    ("projector.net.0.", "model.multi_modal_projector.linear_1."),
    ("projector.net.2.", "model.multi_modal_projector.linear_2."),
    ("llm.model.", "model.language_model."),
    ("llm.lm_head.", "lm_head."),
)


def _rename(name: str, to_llava: bool) -> str | None:
    for ours, theirs in PREFIXES:
        src, dst = (ours, theirs) if to_llava else (theirs, ours)
        if name.startswith(src):
            return dst + name[len(src):]
    return None


def to_llava_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """vlrl state dict -> transformers LLaVA names (every key must map)."""
    out = {}
    for k, v in state.items():
        new = _rename(k, to_llava=True)
        if new is None:
            raise ValueError(f"export: parameter '{k}' has no LLaVA equivalent")
        out[new] = v
    return out


def from_llava_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers LLaVA state dict -> vlrl names (keys outside the mapping are dropped)."""
    return {new: v for k, v in state.items() if (new := _rename(k, to_llava=False)) is not None}


def is_llava(path: str | Path) -> bool:
    """A local directory whose ``config.json`` says ``model_type: llava``, or a hub id of one that
    transformers can resolve (from the local cache when offline)."""
    cfg = Path(path) / "config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("model_type") == "llava"
    if Path(path).exists() or str(path).count("/") != 1:
        return False
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path)).model_type == "llava"
    except (OSError, ValueError):
        return False


def _check_importable(hf) -> None:
    where = "LLaVA checkpoint config"
    if hf.model_type != "llava":
        raise ValueError(f"{where}: model_type '{hf.model_type}' is not 'llava' (only LlavaForConditionalGeneration "
                         f"checkpoints can be imported)")
    if not isinstance(hf.vision_feature_layer, int):
        raise ValueError(f"{where}: vision_feature_layer {hf.vision_feature_layer} selects several layers; vlrl's "
                         f"hf_vision encoder takes one")
    if hf.vision_feature_select_strategy not in ("default", "full"):
        raise ValueError(f"{where}: vision_feature_select_strategy '{hf.vision_feature_select_strategy}' is not "
                         f"'default' or 'full'")
    if hf.projector_hidden_act != "gelu" or not getattr(hf, "multimodal_projector_bias", True):
        raise ValueError(f"{where}: projector_hidden_act '{hf.projector_hidden_act}' (bias "
                         f"{getattr(hf, 'multimodal_projector_bias', True)}): vlrl's mlp projector is "
                         f"Linear-GELU-Linear with biases")


def _image_processor(path: str):
    """The checkpoint's transformers image processor, or None when it has no preprocessor config."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError):
        return None


def llava_model_config(hf, path: str, image_token: str, max_length: int = 2048) -> ModelConfig:
    """The vlrl ModelConfig of a LlavaConfig ``hf`` read from ``path`` (its tokenizer)."""
    from vlrl.models.builder import config_dict

    _check_importable(hf)
    return ModelConfig(
        encoder=EncoderConfig(name="hf_vision", arch=config_dict(hf.vision_config), pretrained=None,
                              feature_layer=int(hf.vision_feature_layer)),
        projector=ProjectorConfig(name="mlp"),
        llm=LLMConfig(config=config_dict(hf.text_config)),
        tokenizer=TokenizerConfig(path=path, image_token=image_token),
        max_length=max_length,
    )


def import_llava(path: str | Path, device: str | torch.device = "cpu", max_length: int = 2048):
    """(VisionLanguageModel, MultimodalProcessor) from a transformers LLaVA checkpoint, weights included;
    logits equal transformers' for the same pixels and token ids (tested)."""
    from transformers import AutoConfig, AutoTokenizer, LlavaForConditionalGeneration

    from vlrl.models.builder import build_vlm

    hf = AutoConfig.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    image_token = tokenizer.convert_ids_to_tokens(int(hf.image_token_index))
    model, processor = build_vlm(llava_model_config(hf, str(path), image_token, max_length))
    seq = getattr(hf, "image_seq_length", None)
    if seq is not None and int(seq) != processor.num_image_tokens:
        raise ValueError(f"{path}: image_seq_length {seq} but the vision tower gives {processor.num_image_tokens} "
                         f"tokens per image ((image_size / patch_size)^2): image splitting is not supported")
    if processor.image_token_id != int(hf.image_token_index):
        raise ValueError(f"{path}: image_token_index {hf.image_token_index} is not the tokenizer's id of "
                         f"'{image_token}' ({processor.image_token_id})")
    theirs = from_llava_names(LlavaForConditionalGeneration.from_pretrained(str(path)).state_dict())
    ours = model.state_dict()
    missing = sorted(set(ours) - set(theirs))
    if missing:
        raise ValueError(f"{path}: the checkpoint has no weights for {missing[:5]} (is it a LLaVA checkpoint?)")
    for k, v in ours.items():
        if theirs[k].shape != v.shape:
            raise ValueError(f"{path}: '{k}' is {tuple(theirs[k].shape)} in the checkpoint, {tuple(v.shape)} in vlrl")
    model.load_state_dict({k: theirs[k] for k in ours}, strict=True)
    images = _image_processor(str(path))
    if images is not None:  # the checkpoint's own resize / crop / normalisation, not a re-implementation
        processor.image_transform = HFImageTransform(images)
    return model.to(device), processor


def _check_projector(model) -> None:
    proj = model.config.projector
    if proj.name != "mlp" or proj.kwargs.get("hidden_dim") not in (None, model.llm.config.hidden_size):
        raise ValueError(f"export: model.projector '{proj.name}' {proj.kwargs or ''} has no LLaVA equivalent "
                         f"(LLaVA's projector is the mlp one with hidden size = the LLM's)")


def _full_state(model) -> dict[str, torch.Tensor]:
    from vlrl.models.lora import has_lora, merged_state_dict

    state = merged_state_dict(model) if has_lora(model) else model.state_dict()
    return {k: v.detach().cpu() for k, v in state.items()}


def llava_config(model, vision=None, has_cls: bool | None = None):
    """The LlavaConfig of a vlrl model (its vision tower in transformers' layout and the mlp projector)."""
    from transformers import LlavaConfig

    from vlrl.models.llava_vision import vision_tower

    _check_projector(model)
    if vision is None:
        vision, _, has_cls = vision_tower(model, _full_state(model))
    # a copy: building a transformers model from a config edits it (attention implementation), and the
    # vlrl model reads its own config at every forward
    text = copy.deepcopy(model.llm.config)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=model.image_token_id,
                       projector_hidden_act="gelu", vision_feature_layer=-1,
                       vision_feature_select_strategy="default" if has_cls else "full",
                       image_seq_length=model.num_image_tokens,
                       tie_word_embeddings=bool(getattr(model.llm.config, "tie_word_embeddings", False)))


def llava_processor(model, processor, config=None):
    """A transformers LlavaProcessor doing what vlrl's processor does: the same resize / crop and
    normalisation (a CLIP image processor), the same tokenizer and chat template, and as many image tokens
    per image as the model's projector outputs."""
    from PIL import Image
    from transformers import CLIPImageProcessor, LlavaProcessor

    t, cfg = processor.image_transform, config or llava_config(model)
    if isinstance(t, HFImageTransform):  # an imported checkpoint's own image processor goes back out
        images = t.image_processor
    else:
        s = {"height": t.size, "width": t.size}
        resize = dict(size=s, do_center_crop=False) if t.resize_mode == "squash" else \
            dict(size={"shortest_edge": t.size}, do_center_crop=True)
        images = CLIPImageProcessor(crop_size=s, image_mean=list(t.mean), image_std=list(t.std),
                                    resample=Image.BICUBIC, **resize)
    return LlavaProcessor(image_processor=images, tokenizer=processor.tokenizer,
                          patch_size=int(cfg.vision_config.patch_size),
                          vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                          chat_template=processor.tokenizer.chat_template, image_token=processor.image_token,
                          num_additional_image_tokens=1 if cfg.vision_feature_select_strategy == "default" else 0)


def export_llava(model, processor, out: str | Path) -> Path:
    """Write ``model`` as a transformers LLaVA directory into ``out``: config, safetensors, a generation
    config that never samples the image placeholder (as vlrl's ``generate``), and a LlavaProcessor
    (tokenizer with its chat template, image processor). Raises ValueError naming the part that LLaVA
    cannot represent."""
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    from vlrl.models.llava_vision import vision_tower

    out = Path(out)
    state = _full_state(model)
    vision, tower_state, has_cls = vision_tower(model, state)
    config = llava_config(model, vision, has_cls)
    hf = LlavaForConditionalGeneration(config).eval()
    hf.generation_config = GenerationConfig(eos_token_id=processor.eos_token_id, pad_token_id=processor.pad_token_id,
                                            suppress_tokens=[model.image_token_id])
    theirs = {"model.vision_tower." + k: v for k, v in tower_state.items()}
    theirs.update(to_llava_names({k: v for k, v in state.items() if not k.startswith("encoder.")}))
    result = hf.load_state_dict(theirs, strict=False)
    # what vlrl pruned (the vision post-norm, a pooling head) is not used by LLaVA's features either
    left = [k for k in result.missing_keys if ".post_layernorm." not in k and ".head." not in k]
    if left or result.unexpected_keys:
        raise ValueError(f"export: weights do not match the LLaVA layout (missing {left[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]})")
    hf.save_pretrained(str(out))
    llava_processor(model, processor, config).save_pretrained(str(out))
    return out


def save_llava_copy(model, processor, out: Path, adapter_base: str | None = None) -> Path | None:
    """A stage's ``export_llava`` (and, with ``adapter_base``, its ``save_adapter``): the LLaVA layout, or
    the LoRA adapter alone, next to the vlrl model it just saved. What LLaVA cannot represent is reported
    on stderr, and the finished stage is not failed for it."""
    import sys

    what = "transformers LLaVA" if adapter_base is None else "LoRA adapter (peft, LLaVA layout)"
    try:
        path = export_llava(model, processor, out) if adapter_base is None else \
            export_lora_adapter(model, out, adapter_base)
    except ValueError as e:
        print(f"[save] not written as a {what}: {e}", file=sys.stderr)
        return None
    print(f"[save] {what} -> {path}")
    return path


def export_lora_adapter(model, out: str | Path, base: str = "") -> Path:
    """The LLM's LoRA adapters alone, in peft's format for the transformers LLaVA layout: on the LLaVA
    export of the model they were trained from (for a LLaVA checkpoint imported by vlrl, that checkpoint
    itself), ``peft.PeftModel.from_pretrained(llava, out)`` gives the adapted model. ``base`` is recorded
    as ``base_model_name_or_path``. Only the adapters are in it: a module trained in full (``train``
    including the projector, say) needs the merged model instead."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    from vlrl.models.lora import has_lora

    cfg = model.config.lora
    if cfg is None or not has_lora(model):
        raise ValueError("export: the model has no LoRA adapters (saved models hold merged weights; adapters are "
                         "in training checkpoints and in a stage's output with save_adapter: true)")
    if list(cfg.modules) != ["llm"]:
        raise ValueError(f"export: adapters on {cfg.modules}: only adapters on the LLM (lora.modules [llm]) are "
                         f"written alone; save the merged model instead")
    tensors = {}
    for k, v in model.state_dict().items():
        if ".lora_" in k:
            name = _rename(k.replace(".default.", "."), to_llava=True)
            tensors[f"base_model.model.{name}"] = v.detach().cpu().contiguous()
    out = Path(out)
    targets = "|".join(cfg.target_modules)
    LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, base_model_name_or_path=base,
               target_modules=rf".*language_model.*\.({targets})").save_pretrained(str(out))
    save_file(tensors, str(out / "adapter_model.safetensors"))
    return out
