"""Robust image loading and the encoder-defined image transform.

``load_image`` accepts a path, raw bytes, a PIL image or a Hugging Face ``{"bytes", "path"}`` dict and always
returns an RGB image: RGBA/LA/P with transparency are composited on white, L/CMYK/I;16 are converted.
A missing or unreadable file is an :class:`ImageLoadError` naming the file and the sample.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageFile, UnidentifiedImageError
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

# A truncated file must be an error, never a half-grey picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageLoadError(ValueError):
    """An image that cannot be used; the message names the file and the sample."""


def _where(src: Any, sample_id: str | None) -> str:
    what = f"image file '{src}'" if isinstance(src, (str, Path)) else f"image ({type(src).__name__})"
    return what + (f" of sample '{sample_id}'" if sample_id is not None else "")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v * (1 / 256)).convert("L")
    return img.convert("RGB")


def load_image(src: Any, *, sample_id: str | None = None, base_dir: str | Path | None = None) -> Image.Image:
    """Open ``src`` as an RGB PIL image.

    Args:
        src: path (absolute, or relative to ``base_dir``), bytes, PIL image, or {"bytes", "path"} dict.
        sample_id: named in errors.
        base_dir: directory relative paths are resolved against (the JSONL file's directory).

    Raises:
        ImageLoadError: missing file, unreadable or truncated data, unsupported source type.
    """
    if isinstance(src, dict):
        src = src.get("bytes") or src.get("path")
    if isinstance(src, Image.Image):
        return to_rgb(src)
    try:
        if isinstance(src, (str, Path)):
            path = Path(src)
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
            if path.is_dir():
                raise ImageLoadError(f"{_where(path, sample_id)} is a directory, not an image file")
            if not path.is_file():
                raise ImageLoadError(f"{_where(path, sample_id)} does not exist")
            with Image.open(path) as im:
                im.load()
                return to_rgb(im)
        if isinstance(src, (bytes, bytearray)):
            with Image.open(io.BytesIO(src)) as im:
                im.load()
                return to_rgb(im)
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"{_where(src, sample_id)} is corrupt or not an image: {e}") from None
    raise ImageLoadError(f"{_where(src, sample_id)}: unsupported image source type {type(src).__name__}")


@dataclass
class ImageTransform:
    """PIL image -> normalised tensor (3, size, size), as the encoder expects.

    ``resize_mode``: "shortest" (resize the short side, centre-crop; CLIP's default) or "squash" (resize
    both sides, no crop; keeps everything in view, used by SigLIP).
    """

    size: int = 224
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.resize_mode not in ("shortest", "squash"):
            raise ValueError(f"image transform: resize_mode '{self.resize_mode}' is not 'shortest' or 'squash'")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        interp = InterpolationMode(self.interpolation)
        if img.size != (self.size, self.size):
            if self.resize_mode == "squash":
                img = TF.resize(img, [self.size, self.size], interpolation=interp)
            else:
                img = TF.center_crop(TF.resize(img, self.size, interpolation=interp), [self.size, self.size])
        x = TF.to_tensor(img)  # (3, H, W) in [0, 1]
        return TF.normalize(x, list(self.mean), list(self.std))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


class HFImageTransform:
    """A transformers image processor as the transform: a checkpoint's own resize, crop and normalisation
    (an imported LLaVA's), not a re-implementation. Same call as ImageTransform: PIL image -> (3, H, W)."""

    def __init__(self, image_processor) -> None:
        self.image_processor = image_processor

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.image_processor(images=img, return_tensors="pt")["pixel_values"][0]

    def to_dict(self) -> dict:
        return {"kind": "transformers", "image_processor": self.image_processor.to_dict()}


def image_transform_from_dict(d: dict):
    """The transform a processor saved: an ImageTransform, or a transformers image processor."""
    if d.get("kind") != "transformers":
        return ImageTransform(**d)
    import transformers

    spec = dict(d["image_processor"])
    name = spec.get("image_processor_type")
    cls = getattr(transformers, str(name), None)
    if cls is None:
        raise ValueError(f"processor config: image_processor_type '{name}' is not a transformers image processor")
    return HFImageTransform(cls.from_dict(spec))
