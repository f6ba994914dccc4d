"""Vision encoders. One file per family; each registers into ENCODERS on import."""

from vlrl.models.encoders.base import ENCODERS, EncoderBuilder, VisionEncoder
from vlrl.models.encoders import hf as _hf  # noqa: F401  (registers hf_vision)
from vlrl.models.encoders import open_clip as _open_clip  # noqa: F401  (registers open_clip)

__all__ = ["ENCODERS", "EncoderBuilder", "VisionEncoder"]
