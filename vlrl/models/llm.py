"""The causal LLM: any transformers ``AutoModelForCausalLM``, from a config dict or a path / hub id."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from vlrl.config import LLMConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype '{name}' is not one of {sorted(DTYPES)}")
    return DTYPES[name]


def build_llm(cfg: LLMConfig, vocab_size: int, pad_token_id: int | None, eos_token_id: int | None) -> PreTrainedModel:
    """Build or load the LLM and make its vocabulary fit the tokenizer.

    Args:
        cfg: exactly one of ``cfg.path`` (local dir / hub id, weights loaded) and ``cfg.config``
            (a config dict with ``model_type``, random init).
        vocab_size: the tokenizer's size; embeddings are resized when it grew (added ``<image>`` token).
    """
    if (cfg.path is None) == (cfg.config is None):
        raise ValueError("model.llm: give exactly one of 'path' (pretrained) and 'config' (random init)")
    kwargs = dict(cfg.kwargs)
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    dtype = torch_dtype(cfg.dtype)
    if cfg.path is not None:
        llm = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=dtype, **kwargs)
    else:
        d = dict(cfg.config)
        if "model_type" not in d:
            raise ValueError("model.llm.config needs 'model_type' (e.g. llama, qwen2)")
        # a config's own vocabulary may be larger than its tokenizer (padded embedding tables, as in LLaVA
        # and Qwen checkpoints): keep it, so saved weights load back; never smaller than the tokenizer
        d.update(vocab_size=max(int(d.get("vocab_size") or 0), vocab_size), pad_token_id=pad_token_id,
                 eos_token_id=eos_token_id)
        conf = AutoConfig.for_model(d.pop("model_type"), **d)
        llm = AutoModelForCausalLM.from_config(conf, dtype=dtype, **kwargs)
    if llm.get_input_embeddings().weight.shape[0] < vocab_size:
        llm.resize_token_embeddings(vocab_size)
    return llm
