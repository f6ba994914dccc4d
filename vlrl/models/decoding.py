"""The LLM's side of generation: prefill a prompt batch, then one token per row and step.

Two implementations of one small interface (``prefill`` / ``select`` / ``step``), chosen by
:func:`decoder_for`:

- :class:`TransformersDecoder`: any causal LM through its own ``forward`` and a transformers cache (the KV
  layers written in place, ``vlrl.models.kv_cache``); optionally through ``torch.compile``.
- :class:`LlamaDecoder`: Llama-family LMs (Llama, Mistral and Qwen2 without sliding windows) computed from
  the module's own weights. A small model's decode step is made of per-operator dispatch, not of FLOPs:
  transformers' forward builds a causal mask and the rotary table on every call, goes through the cache's
  Python per layer and runs ~40 operators per layer. Here the rotary table is built once per generation,
  the mask is a view, the KV cache is one preallocated tensor (one copy to drop finished rows) and a layer
  is ~17 operators: same math (``tests/unit/test_decoding.py`` holds tokens and log-probs equal to the
  transformers path), fewer dispatches (docs/results.md has the measured speed-ups).

Weights are read at every call, so an optimizer step between two generations is seen by the next one.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vlrl.models.kv_cache import decode_cache

DECODERS = ("auto", "llama", "transformers")
# classes whose layers are the Llama layout: RMSNorm, q/k/v/o (+ bias for Qwen2), SwiGLU MLP, rotary
LLAMA_FAMILY = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inverse frequencies fixed at init


class TransformersDecoder:
    """Any causal LM through its ``forward`` (``compiled``: the ``torch.compile``d one) and a cache with room
    for ``reserve`` new tokens."""

    def __init__(self, llm: nn.Module, forward: Callable, cache_key: str, reserve: int) -> None:
        self.llm, self.forward, self.cache_key, self.reserve = llm, forward, cache_key, reserve
        self.cache = None

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(R, T, D) prompt embeddings, (R, T) mask and positions -> (R, V) logits of the last position."""
        given = decode_cache(self.llm, self.reserve)
        out = self.forward(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True,
                           logits_to_keep=1, **({} if given is None else {self.cache_key: given}))
        # transformers 5 names the returned cache ``cache`` (``past_key_values`` warns, and goes in 5.40)
        self.cache = out.cache if self.cache_key == "cache" else out.past_key_values
        return out.logits[:, -1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep (or repeat) the cached rows ``rows`` (R',)."""
        self.cache.batch_select_indices(rows)

    def step(self, tok: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(R,) new tokens at (R,) positions, (R, L) mask over everything cached and them -> (R, V) logits."""
        out = self.forward(input_ids=tok[:, None], attention_mask=mask, position_ids=pos[:, None],
                           use_cache=True, **{self.cache_key: self.cache})
        return out.logits[:, -1]


def llama_unsupported(llm: nn.Module) -> str | None:
    """Why :class:`LlamaDecoder` cannot run ``llm`` exactly as its own forward does, or None if it can."""
    cfg = llm.config
    if type(llm).__name__ not in LLAMA_FAMILY:
        return f"{type(llm).__name__} is not one of {LLAMA_FAMILY}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act}"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return "layers other than full attention"
    if getattr(cfg, "attention_dropout", 0.0):
        return "attention dropout"
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    rope = getattr(llm.model.rotary_emb, "rope_type", "default")
    if rope not in STATIC_ROPE:
        return f"rope type {rope} (its frequencies change with the length)"
    from torch.distributed.fsdp import FSDPModule

    if any(isinstance(m, FSDPModule) for m in llm.modules()):  # weights gathered only inside their forwards
        return "sharded (FSDP) modules"
    for layer in llm.model.layers:  # LoRA and other wrappers replace nn.Linear: their own forward must run
        att, mlp = layer.self_attn, layer.mlp
        if any(type(m) is not nn.Linear for m in (att.q_proj, att.k_proj, att.v_proj, att.o_proj,
                                                  mlp.gate_proj, mlp.up_proj, mlp.down_proj)):
            return "a wrapped linear layer (LoRA?)"
    if type(llm.lm_head) is not nn.Linear or llm.lm_head.bias is not None:
        return "a wrapped or biased lm_head"
    return None


def _rms_norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalised in fp32, cast back, then scaled by the weight."""
    return norm.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon).to(x.dtype)


class LlamaDecoder:
    """Prefill and decode of a Llama-family causal LM from its weights (see the module docstring).

    The KV cache is one (layers, 2, R, H_kv, capacity, D) tensor; position t of every row is written at
    step t (prompts are left-padded to one length), so the attention reads the first ``length`` positions.
    """

    def __init__(self, llm: nn.Module, reserve: int) -> None:
        why = llama_unsupported(llm)
        if why is not None:
            raise ValueError(f"LlamaDecoder cannot run this model: {why}")
        cfg = llm.config
        self.llm, self.reserve = llm, int(reserve)
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.kv: torch.Tensor | None = None
        self.length = 0
        self.cos = self.sin = None

    def _rope_table(self, positions: int, dtype: torch.dtype) -> None:
        """cos and sin (P, D) of positions 0..P-1 as transformers computes them, with rotate_half's sign
        folded into sin: x * cos + roll(x, D/2) * sin is ``apply_rotary_pos_emb``."""
        rot = self.llm.model.rotary_emb
        inv = rot.inv_freq.float()
        freqs = torch.arange(positions, device=inv.device, dtype=torch.float)[:, None] * inv  # (P, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        scale = getattr(rot, "attention_scaling", 1.0)
        self.cos = (emb.cos() * scale).to(dtype)
        sin = emb.sin() * scale
        self.sin = torch.cat((-sin[:, : inv.numel()], sin[:, inv.numel():]), dim=-1).to(dtype)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """(R, H, n, D) rotated by (R, 1, n, D) cos / signed sin."""
        return x * cos + x.roll(self.head_dim // 2, dims=-1) * sin

    def _layer(self, i: int, h: torch.Tensor, attn_mask: torch.Tensor, cos, sin) -> torch.Tensor:
        """One decoder layer on (R, n, hidden) states whose keys go to positions [length - n, length)."""
        layer = self.llm.model.layers[i]
        att, mlp = layer.self_attn, layer.mlp
        R, n, _ = h.shape
        x = _rms_norm(h, layer.input_layernorm)
        q = F.linear(x, att.q_proj.weight, att.q_proj.bias).view(R, n, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(x, att.k_proj.weight, att.k_proj.bias).view(R, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(x, att.v_proj.weight, att.v_proj.bias).view(R, n, self.kv_heads, self.head_dim).transpose(1, 2)
        start = self.length - n  # this call's positions; the attention reads every cached one
        self.kv[i, 0, :, :, start: self.length] = self._rotate(k, cos, sin)
        self.kv[i, 1, :, :, start: self.length] = v
        keys, values = self.kv[i, 0, :, :, : self.length], self.kv[i, 1, :, :, : self.length]
        a = F.scaled_dot_product_attention(self._rotate(q, cos, sin), keys, values, attn_mask=attn_mask,
                                           enable_gqa=self.heads != self.kv_heads)  # (R, H, n, D)
        h = h + F.linear(a.transpose(1, 2).reshape(R, n, -1), att.o_proj.weight, att.o_proj.bias)
        x = _rms_norm(h, layer.post_attention_layernorm)
        gate = F.linear(x, mlp.gate_proj.weight, mlp.gate_proj.bias)
        up = F.linear(x, mlp.up_proj.weight, mlp.up_proj.bias)
        return h + F.linear(F.silu(gate) * up, mlp.down_proj.weight, mlp.down_proj.bias)

    def _run(self, h: torch.Tensor, attn_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(R, n, hidden) inputs at (R, n) positions -> (R, V) logits of the last one."""
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]  # (R, 1, n, D)
        for i in range(len(self.llm.model.layers)):
            h = self._layer(i, h, attn_mask, cos, sin)
        return self.llm.lm_head(_rms_norm(h[:, -1], self.llm.model.norm))

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(R, T, hidden) left-padded prompt embeddings, (R, T) mask and positions -> (R, V) last logits."""
        R, T, _ = embeds.shape
        # transformers' rotary table has the embeddings' dtype (fp32 under bf16 autocast too, so rotated
        # keys are fp32 there); the cache keeps that dtype, and SDPA's autocast casts what it reads
        self._rope_table(int(pos.max()) + self.reserve + 1, embeds.dtype)
        layers = len(self.llm.model.layers)
        self.kv = embeds.new_empty((layers, 2, R, self.kv_heads, T + self.reserve, self.head_dim))
        self.length = T
        keep = mask.bool()
        causal = torch.ones(T, T, dtype=torch.bool, device=embeds.device).tril()
        # a padding position attends to itself only: never an empty row (NaN), never seen by real tokens
        attn = (causal & keep[:, None, None, :]) | torch.eye(T, dtype=torch.bool, device=embeds.device)
        return self._run(embeds, attn, pos)

    def select(self, rows: torch.Tensor) -> None:
        kv = self.kv[:, :, :, :, : self.length].index_select(2, rows)
        self.kv = self.kv.new_empty((*kv.shape[:4], self.kv.shape[4], self.head_dim))
        self.kv[:, :, :, :, : self.length] = kv

    def step(self, tok: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(R,) new tokens at (R,) positions, (R, length + 1) mask -> (R, V) logits."""
        if self.length >= self.kv.shape[4]:
            raise RuntimeError(f"LlamaDecoder: more steps than the {self.reserve} reserved")
        self.length += 1
        h = F.embedding(tok[:, None], self.llm.model.embed_tokens.weight)
        return self._run(h, mask.bool()[:, None, None, :], pos[:, None])


def decoder_for(llm: nn.Module, choice: str, forward: Callable, cache_key: str, reserve: int):
    """The decoder generation runs: ``choice`` "auto" takes :class:`LlamaDecoder` where it supports the model
    and ``forward`` is the module itself (not compiled), else :class:`TransformersDecoder`; "llama" insists
    (an error says why it cannot), "transformers" always takes the model's own forward."""
    if choice not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got '{choice}'")
    if choice == "llama" or (choice == "auto" and forward is llm and llama_unsupported(llm) is None):
        return LlamaDecoder(llm, reserve)
    return TransformersDecoder(llm, forward, cache_key, reserve)
