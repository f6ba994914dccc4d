"""Stages: thin recipes, one per stage. ``STAGES`` maps a stage name to its module and config schema."""

from __future__ import annotations

from dataclasses import dataclass, field

from vlrl.config import ModelConfig

STAGES: dict[str, tuple[str, str]] = {
    "align": ("vlrl.stages.align", "AlignConfig"),
    "curate": ("vlrl.stages.curate", "CurateConfig"),
    "warmup": ("vlrl.stages.warmup", "WarmupConfig"),
    "eval": ("vlrl.stages.evaluate", "EvalConfig"),
    "rl": ("vlrl.stages.rl", "RLConfig"),
    "long2short": ("vlrl.stages.long2short", "Long2ShortConfig"),
    "pipeline": ("vlrl.stages.pipeline", "PipelineConfig"),
}


@dataclass
class ModelFile:
    """Schema of a model-only YAML (``configs/*/model.yaml``), included by stage configs."""

    model: ModelConfig = field(default_factory=ModelConfig)
