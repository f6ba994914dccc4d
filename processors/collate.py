"""The one owner of mixed batches.

Every collator takes per-sample :class:`~processors.processor.Encoded` items, each with its own 0..n
images, and never looks at the first item to decide what a batch is: pixel values of all images in the
batch are concatenated in sample order and ``image_counts`` says how many belong to each sample. A batch
with no image at all has ``pixel_values=None``; no blank image is ever fabricated.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

IGNORE_INDEX = -100


@dataclass
class Batch:
    """Model inputs for a mixed batch.

    Attributes:
        input_ids: (B, T) token ids with image placeholders already expanded.
        attention_mask: (B, T) 1 for real tokens, 0 for padding.
        pixel_values: (N, 3, H, W) for the N images of the batch in sample order, or None if N == 0.
        image_counts: per-sample number of images (len B, sums to N).
        labels: (B, T) SFT targets, IGNORE_INDEX outside response tokens (collate_sft only).
        response_mask: (B, T) bool, True at response tokens (collate_sft / collate_scoring).
        sample_ids: the samples' ids (for error messages).
        prompt_lens: per-sample prompt length before padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None
    image_counts: list[int]
    labels: torch.Tensor | None = None
    response_mask: torch.Tensor | None = None
    sample_ids: list[str] = field(default_factory=list)
    prompt_lens: list[int] = field(default_factory=list)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Batch":
        def mv(t: torch.Tensor | None, cast: bool = False) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if cast and dtype is not None else t.dtype)

        return replace(
            self,
            input_ids=mv(self.input_ids),
            attention_mask=mv(self.attention_mask),
            pixel_values=mv(self.pixel_values, cast=True),
            labels=mv(self.labels),
            response_mask=mv(self.response_mask),
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def rows(self, idx: Sequence[int]) -> "Batch":
        """Rows ``idx`` of a right-padded batch, with their images (in that order), trimmed to their own
        longest row: a part of short rows does not pay for the batch's longest one."""
        offsets = [0]
        for c in self.image_counts:
            offsets.append(offsets[-1] + c)
        img = [j for i in idx for j in range(offsets[i], offsets[i + 1])]
        t = torch.tensor(list(idx), dtype=torch.long, device=self.input_ids.device)
        width = int(self.attention_mask[t].sum(-1).max())

        def cut(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[t, :width]

        return replace(self, input_ids=cut(self.input_ids), attention_mask=cut(self.attention_mask),
                       pixel_values=self.pixel_values[img] if self.pixel_values is not None and img else None,
                       image_counts=[self.image_counts[i] for i in idx], labels=cut(self.labels),
                       response_mask=cut(self.response_mask), sample_ids=[self.sample_ids[i] for i in idx],
                       prompt_lens=[self.prompt_lens[i] for i in idx])

    def split_by_length(self, parts: int) -> list["Batch"]:
        """The rows sorted by length and cut into ``parts`` near-equal parts, each trimmed to its own
        longest row (``rows``). Training on the parts with losses weighted by their token share gives the
        batch's gradient with less padding. Always ``parts`` parts: requires len(self) >= parts."""
        if parts < 1 or len(self) < parts:
            raise ValueError(f"cannot split {len(self)} rows into {parts} parts")
        order = sorted(range(len(self)), key=lambda i: int(self.attention_mask[i].sum()))
        bounds = [round(k * len(self) / parts) for k in range(parts + 1)]
        return [self.rows(order[bounds[k] : bounds[k + 1]]) for k in range(parts)]


def _pixels(items: Sequence) -> tuple[torch.Tensor | None, list[int]]:
    counts = [it.num_images for it in items]
    stacks = [it.pixel_values for it in items if it.num_images > 0]
    return (torch.cat(stacks, dim=0) if stacks else None), counts


def _pad(items: Sequence, pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), T), dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it.input_ids)
        sl = slice(T - n, T) if left else slice(0, n)
        ids[i, sl] = torch.tensor(it.input_ids, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def collate_generation(items: Sequence, pad_id: int) -> Batch:
    """Prompts, left-padded so that every row's next token is at position T."""
    ids, mask = _pad(items, pad_id, left=True)
    pixels, counts = _pixels(items)
    return Batch(ids, mask, pixels, counts, sample_ids=[it.sample_id for it in items],
                 prompt_lens=[len(it.input_ids) for it in items])


def collate_scoring(items: Sequence, pad_id: int) -> Batch:
    """Prompt + response, right-padded; ``response_mask`` marks the response tokens."""
    ids, mask = _pad(items, pad_id, left=False)
    resp = torch.zeros_like(ids, dtype=torch.bool)
    for i, it in enumerate(items):
        resp[i, it.prompt_len : len(it.input_ids)] = True
    pixels, counts = _pixels(items)
    return Batch(ids, mask, pixels, counts, response_mask=resp, sample_ids=[it.sample_id for it in items],
                 prompt_lens=[it.prompt_len for it in items])


def collate_sft(items: Sequence, pad_id: int) -> Batch:
    """Prompt + response, right-padded; ``labels`` are the response tokens, IGNORE_INDEX elsewhere."""
    batch = collate_scoring(items, pad_id)
    batch.labels = batch.input_ids.masked_fill(~batch.response_mask, IGNORE_INDEX)
    return batch
