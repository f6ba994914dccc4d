"""A KV cache that writes each decode step in place instead of concatenating.

transformers' ``DynamicLayer`` grows its keys and values with ``torch.cat`` on every forward, so a decode
step copies the whole cache of every layer: O(length) work per token, O(length^2) per response, and an
allocation per layer and step. Generation knows its final length up front (prompt + max new tokens), so
:class:`PreallocatedLayer` allocates that much once at prefill and writes each new position into it; the
attention sees a view of the filled part, so masks, positions and results are those of ``DynamicLayer``.
Only plain full-attention layers are replaced; sliding-window, linear-attention and other layer kinds
keep transformers' own implementation.
"""

from __future__ import annotations

import torch

try:  # transformers >= 4.56 builds caches from per-layer objects; older versions keep their own cache
    from transformers.cache_utils import DynamicCache, DynamicLayer
except ImportError:  # pragma: no cover - exercised only on old transformers
    DynamicCache = DynamicLayer = None  # type: ignore[assignment,misc]


class PreallocatedLayer(DynamicLayer if DynamicLayer is not None else object):  # type: ignore[misc]
    """One layer's keys and values, (B, H, capacity, D) buffers of which the first ``length`` positions are
    filled; ``keys`` / ``values`` are views (B, H, length, D) of them, as ``DynamicLayer`` exposes.

    Args:
        reserve: positions to allocate beyond the first update (the prefill): the new-token budget.
    """

    def __init__(self, reserve: int) -> None:
        super().__init__()
        self.reserve = int(reserve)
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    @staticmethod
    def _allocate(like: torch.Tensor, capacity: int) -> torch.Tensor:
        """An empty buffer with ``like``'s rows, heads and head size and ``capacity`` positions."""
        return like.new_empty((like.shape[0], like.shape[1], capacity, like.shape[3]))

    def _expose(self) -> None:
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append (B, H, n, D) new states; returns the (B, H, length, D) views of everything cached."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        end = self.length + n
        if self._k is None or end > self._k.shape[-2]:  # first update, or more tokens than reserved: grow
            capacity = end + self.reserve if self._k is None else 2 * end
            k, v = self._allocate(key_states, capacity), self._allocate(value_states, capacity)
            if self._k is not None:
                k[:, :, : self.length], v[:, :, : self.length] = self.keys, self.values
            self._k, self._v = k, v
        self._k[:, :, self.length:end] = key_states
        self._v[:, :, self.length:end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self._k = self._v = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` positions (transformers' convention: a negative count)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative number of tokens to remove, got {tokens_to_remove}")
        if self._k is not None and tokens_to_remove < 0:
            self.length = max(0, self.length + tokens_to_remove)
            self._expose()

    def _rebuild(self, take) -> None:
        """New buffers holding ``take(filled part)`` for the rows it returns, with the same spare capacity."""
        if self._k is None:
            return
        capacity = self._k.shape[-2]
        for name in ("_k", "_v"):
            rows = take(getattr(self, name)[:, :, : self.length])
            buf = self._allocate(rows, capacity)
            buf[:, :, : self.length] = rows
            setattr(self, name, buf)
        self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep (and repeat, where ``indices`` repeats) the rows ``indices`` (B',) of the batch."""
        self._rebuild(lambda t: t.index_select(0, indices.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._rebuild(lambda t: t.repeat_interleave(repeats, dim=0))

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)


def decode_cache(llm: torch.nn.Module, reserve: int):
    """A fresh cache for generating up to ``reserve`` new tokens with ``llm`` (a transformers causal LM):
    transformers' ``DynamicCache`` for the model's layer kinds, with every plain full-attention layer a
    :class:`PreallocatedLayer`. ``None`` on a transformers without per-layer caches (the model then builds
    its own)."""
    if DynamicLayer is None:
        return None
    cache = DynamicCache(config=llm.config)
    if not cache.layers:  # no per-layer description in the config: every layer is a full-attention one
        cache.layers = [PreallocatedLayer(reserve) for _ in range(llm.config.get_text_config().num_hidden_layers)]
        cache.layer_class_to_replicate = None
    cache.layers = [PreallocatedLayer(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
