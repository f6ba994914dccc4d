"""Raw samples -> tensors. No model code lives here.

- ``image``: robust image loading and the encoder's image transform.
- ``tokenizer``: the locally built tokenizer of the embedded default (no download).
- ``chat``: prompt formatting and image placeholders.
- ``processor``: :class:`MultimodalProcessor`, saved and loaded next to the model.
- ``collate``: the one owner of mixed batches (SFT, generation, scoring).
"""

from processors.collate import Batch, collate_generation, collate_scoring, collate_sft
from processors.image import ImageLoadError, ImageTransform, load_image
from processors.processor import Encoded, MultimodalProcessor, PromptTooLongError

__all__ = [
    "Batch",
    "Encoded",
    "ImageLoadError",
    "ImageTransform",
    "MultimodalProcessor",
    "PromptTooLongError",
    "collate_generation",
    "collate_scoring",
    "collate_sft",
    "load_image",
]
