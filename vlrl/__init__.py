"""vlrl: teach vision-language models to reason with reinforcement learning (the Kimi k1.5 recipe).

Public API (imported lazily, so ``vlrl --help`` stays fast)::

    from vlrl import Predictor, build_vlm, load_pretrained, save_pretrained, load_config, load_samples, Sample
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Predictor": "vlrl.inference",
    "build_vlm": "vlrl.models.builder",
    "load_pretrained": "vlrl.models.builder",
    "save_pretrained": "vlrl.models.builder",
    "VisionLanguageModel": "vlrl.models.vlm",
    "SamplingParams": "vlrl.models.generation",
    "generate": "vlrl.models.generation",
    "ENCODERS": "vlrl.models.encoders",
    "PROJECTORS": "vlrl.models.projectors",
    "ModelConfig": "vlrl.config",
    "load_config": "vlrl.config",
    "load_samples": "vlrl.data.records",
    "Sample": "vlrl.types",
    "MultimodalProcessor": "processors.processor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vlrl' has no attribute '{name}'")
