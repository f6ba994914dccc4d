"""Models: encoders (ENCODERS), projectors (PROJECTORS), the LLM, and the composed VLM."""

from vlrl.models.builder import build_vlm, load_pretrained, save_pretrained
from vlrl.models.encoders import ENCODERS, VisionEncoder
from vlrl.models.generation import GenerationOutput, SamplingParams, generate
from vlrl.models.projectors import PROJECTORS
from vlrl.models.vlm import ImageTokenMismatchError, VisionLanguageModel

__all__ = [
    "ENCODERS",
    "PROJECTORS",
    "GenerationOutput",
    "ImageTokenMismatchError",
    "SamplingParams",
    "VisionEncoder",
    "VisionLanguageModel",
    "build_vlm",
    "generate",
    "load_pretrained",
    "save_pretrained",
]
