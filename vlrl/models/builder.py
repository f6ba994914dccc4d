"""build_vlm(cfg): the only reader of the model config. Also save / load of a whole VLM.

A saved model directory is self-contained and loads with no network access:

    vlm_config.json        the ModelConfig with architectures only (no hub ids, no pretrained tags)
    model.safetensors      all weights (encoder, projector, LLM)
    tokenizer files + processor_config.json   (the MultimodalProcessor)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_file, save_model
from transformers import AutoTokenizer

from processors.processor import MultimodalProcessor
from processors.tokenizer import build_tokenizer
from vlrl.config import LLMConfig, ModelConfig, TokenizerConfig, from_dict, to_dict
from vlrl.guards import NonFiniteError, nonfinite_tensors
from vlrl.models.encoders import ENCODERS
from vlrl.models.llm import build_llm
from vlrl.models.lora import add_lora, has_lora, merged_state_dict
from vlrl.models.projectors import PROJECTORS
from vlrl.models.vlm import VisionLanguageModel

CONFIG_NAME = "vlm_config.json"
WEIGHTS_NAME = "model.safetensors"


def build_model_tokenizer(cfg: ModelConfig):
    """The tokenizer named by ``cfg.tokenizer``: trained locally (``build``), or loaded from a path."""
    tc = cfg.tokenizer
    if tc.build is not None:
        from vlrl.data.synth import corpus

        spec = dict(tc.build)
        vocab_size = int(spec.pop("vocab_size", 1024))
        return build_tokenizer(corpus(**spec), vocab_size=vocab_size)
    path = tc.path or cfg.llm.path
    if path is None:
        raise ValueError("model.tokenizer: give 'path', or 'build' for a local tokenizer, or model.llm.path")
    return AutoTokenizer.from_pretrained(str(path))


def build_vlm(cfg: ModelConfig, system_prompt: str | None = None) -> tuple[VisionLanguageModel, MultimodalProcessor]:
    """Build encoder, LLM, projector and processor from ``cfg`` (weights from their sources, if any)."""
    tokenizer = build_model_tokenizer(cfg)
    if cfg.tokenizer.image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [cfg.tokenizer.image_token]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoder, projector, llm = _build_parts(cfg, tokenizer)
    processor = MultimodalProcessor(tokenizer, encoder.image_transform(), projector.num_tokens,
                                    image_token=cfg.tokenizer.image_token, max_length=cfg.max_length,
                                    system_prompt=system_prompt)
    saved_cfg = ModelConfig(
        encoder=encoder.export_config(),
        projector=cfg.projector,
        llm=LLMConfig(config=config_dict(llm.config), dtype=cfg.llm.dtype,
                      attn_implementation=cfg.llm.attn_implementation),
        tokenizer=TokenizerConfig(image_token=cfg.tokenizer.image_token),
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    model = VisionLanguageModel(encoder, projector, llm, processor.image_token_id, saved_cfg)
    if cfg.lora is not None:
        add_lora(model, cfg.lora)
    return model, processor


def _build_parts(cfg: ModelConfig, tokenizer):
    """(encoder, projector, llm) for ``cfg``, the LLM's vocabulary sized to ``tokenizer``."""
    encoder = ENCODERS.build(cfg.encoder.name, cfg.encoder)
    llm = build_llm(cfg.llm, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    d_llm = llm.get_input_embeddings().weight.shape[1]
    projector = PROJECTORS.build(cfg.projector.name, in_dim=encoder.hidden_size, out_dim=d_llm,
                                 num_in_tokens=encoder.num_tokens, **cfg.projector.kwargs)
    projector.to(dtype=next(llm.parameters()).dtype)
    if cfg.gradient_checkpointing:
        _checkpointing(encoder, llm)
    return encoder, projector, llm


def _checkpointing(encoder, llm) -> None:
    encoder.gradient_checkpointing(True)
    llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def enable_gradient_checkpointing(model: VisionLanguageModel) -> None:
    """Turn on gradient checkpointing in a built or loaded model (and record it in its config)."""
    _checkpointing(model.encoder, model.llm)
    model.config = dataclasses.replace(model.config, gradient_checkpointing=True)


def config_dict(config) -> dict:
    """A transformers config as the plain dict vlrl saves (no private keys, versions or class names)."""
    d = config.to_dict()
    return {k: v for k, v in d.items() if not k.startswith("_") and k not in ("transformers_version", "architectures")}


def save_pretrained(model: VisionLanguageModel, processor: MultimodalProcessor, directory: str | Path,
                    merge_lora: bool = True) -> Path:
    """Write weights (safetensors), config and processor into ``directory``; LoRA adapters are merged into
    full weights unless ``merge_lora`` is False (training checkpoints keep them). Everything is written to
    a scratch folder first and then moved file by file with atomic renames, so a crash mid-save never
    leaves a half-written file, and other files in ``directory`` (metrics, configs) are left alone. A model
    with a NaN or infinite weight is refused (:class:`vlrl.guards.NonFiniteError`) before anything is written."""
    directory = Path(directory)
    config, state = model.config, None
    if merge_lora and has_lora(model):
        config, state = dataclasses.replace(model.config, lora=None), merged_state_dict(model)
    bad = nonfinite_tensors((state or model.state_dict()).items())
    if bad:  # checked before anything is written: what is on disk stays the last good model
        raise NonFiniteError(f"refusing to save a model with non-finite weights to {directory} "
                             f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); the files there are unchanged")
    tmp = directory / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / CONFIG_NAME).write_text(json.dumps(to_dict(config), indent=2))
    if state is None:
        save_model(model, str(tmp / WEIGHTS_NAME))
    else:
        save_file(_one_name_per_tensor(state), str(tmp / WEIGHTS_NAME))
    processor.save_pretrained(tmp)
    for f in sorted(tmp.iterdir(), key=lambda p: p.name == CONFIG_NAME):  # the config last: it marks completion
        os.replace(f, directory / f.name)
    tmp.rmdir()
    return directory


def _one_name_per_tensor(state: dict) -> dict:
    """Tied weights (one tensor under two names) once, as safetensors' save_model stores them."""
    seen, out = set(), {}
    for k, v in state.items():
        key = (v.data_ptr(), tuple(v.shape), v.dtype)
        if key not in seen:
            seen.add(key)
            out[k] = v.contiguous()
    return out


# keyword arguments that make transformers fetch or run something on load
_UNSAFE_KWARGS = ("trust_remote_code", "code_revision", "revision", "token", "cache_dir", "local_files_only")


def unsafe_saved_config(cfg: ModelConfig) -> list[str]:
    """Why a saved model's config could make loading read a path, reach the hub or run code (empty when
    safe). save_pretrained writes every architecture inline (llm.config, the encoder's arch dict or an
    open_clip name) and no paths, so any of these means the file was crafted or edited."""
    why = []
    if cfg.llm.path is not None:
        why.append(f"names llm.path '{cfg.llm.path}'")
    if cfg.tokenizer.path is not None or cfg.tokenizer.build is not None:
        why.append("names a tokenizer path or build spec (the tokenizer is the directory's own)")
    if cfg.encoder.pretrained is not None:
        why.append(f"names encoder.pretrained '{cfg.encoder.pretrained}'")
    if cfg.encoder.name == "hf_vision" and not isinstance(cfg.encoder.arch, dict):
        why.append(f"names encoder.arch '{cfg.encoder.arch}' (a saved hf_vision encoder has an inline config)")
    arch = cfg.encoder.arch
    if cfg.encoder.name == "open_clip" and isinstance(arch, str) and any(c in arch for c in ":/\\"):
        why.append(f"names encoder.arch '{arch}' (not an open_clip architecture name)")
    for part, kwargs in (("llm", cfg.llm.kwargs), ("encoder", cfg.encoder.kwargs), ("projector", cfg.projector.kwargs)):
        bad = [k for k in kwargs if k in _UNSAFE_KWARGS]
        if bad:
            why.append(f"passes {', '.join(bad)} in {part}.kwargs")
    return why


def load_pretrained(directory: str | Path, device: str | torch.device = "cpu",
                    precision: str = "fp32") -> tuple[VisionLanguageModel, MultimodalProcessor]:
    """Load a directory written by :func:`save_pretrained` (no network, no pretrained sources, no code from
    the directory: a config naming paths, hub ids or ``trust_remote_code`` is refused, see
    :func:`unsafe_saved_config`), or import a transformers LLaVA checkpoint (a directory, or a hub id in the
    local cache: ``vlrl.models.llava``). ``precision``: "bf16" runs the model's forwards under bf16
    autocast (the weights stay fp32), see ``VisionLanguageModel.autocast``."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"load_pretrained: precision must be fp32 or bf16, got '{precision}'")
    model, processor = _load(Path(directory), device)
    model.precision = precision
    return model, processor


def _load(directory: Path, device: str | torch.device) -> tuple[VisionLanguageModel, MultimodalProcessor]:
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        from vlrl.models.llava import import_llava, is_llava

        if is_llava(directory):
            return import_llava(directory, device)
        raise FileNotFoundError(f"{cfg_path} not found: '{directory}' is not a saved vlrl model, nor a "
                                f"transformers LLaVA checkpoint (config.json with model_type llava)")
    cfg = from_dict(ModelConfig, json.loads(cfg_path.read_text()), origin=str(cfg_path))
    unsafe = unsafe_saved_config(cfg)
    if unsafe:
        raise ValueError(f"refusing to load {directory}: {cfg_path.name} {'; '.join(unsafe)}. A saved vlrl model is "
                         f"weights + architecture + processor and never needs a path, a download or code to load; "
                         f"this one was not written by vlrl's save_pretrained or was edited")
    processor = MultimodalProcessor.from_pretrained(directory)
    encoder, projector, llm = _build_parts(cfg, processor.tokenizer)
    model = VisionLanguageModel(encoder, projector, llm, processor.image_token_id, cfg)
    if cfg.lora is not None:  # a training checkpoint keeps its adapters unmerged
        add_lora(model, cfg.lora)
    device = torch.device(device)
    device = torch.device("cpu") if device.type == "cpu" else device  # safetensors rejects "cpu:0"
    load_model(model, str(directory / WEIGHTS_NAME), strict=True, device=str(device))
    return model.to(device), processor
