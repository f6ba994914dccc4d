"""Stages: thin recipes, one per stage, and the one table of them.

``STAGES`` lists every stage the CLI runs (``vlrl <name> --config ...``): its module, config schema and
help. ``PIPELINE`` lists the steps of ``vlrl pipeline`` in order, each a run of one stage with the paths
that chain it to the earlier steps and its title in the report. Adding a stage: its module (config schema
and ``main(cfg)``), a row here, and its config under ``configs/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vlrl.config import ModelConfig


@dataclass(frozen=True)
class Stage:
    module: str  # import path of the stage module
    schema: str  # its config dataclass
    help: str  # one line for ``vlrl --help``


STAGES: dict[str, Stage] = {
    "align": Stage("vlrl.stages.align", "AlignConfig",
                   "vision-language alignment on image descriptions (freezing schedule)"),
    "curate": Stage("vlrl.stages.curate", "CurateConfig", "prompt-set curation: tags, evaluability + easy-to-hack "
                    "filters, model-based difficulty, balanced selection"),
    "warmup": Stage("vlrl.stages.warmup", "WarmupConfig", "supervised training on responses (long-CoT warm-up SFT)"),
    "eval": Stage("vlrl.stages.evaluate", "EvalConfig", "evaluate a model: pass@k, maj@k per modality"),
    "rl": Stage("vlrl.stages.rl", "RLConfig",
                "RL: Kimi k1.5 online mirror descent (or grpo / rloo), partial rollouts, length penalty"),
    "long2short": Stage("vlrl.stages.long2short", "Long2ShortConfig", "long2short: model merging, shortest "
                        "rejection sampling, DPO, long2short RL, and the token-efficiency report"),
    "pipeline": Stage("vlrl.stages.pipeline", "PipelineConfig", "the whole recipe in one run directory: align, "
                      "warm-up, curation, RL, long2short, report (re-running skips finished stages)"),
}


@dataclass(frozen=True)
class Step:
    """One step of ``vlrl pipeline``: ``stage`` run with ``wiring`` (``key=value`` overrides in which
    ``{out}`` is this step's directory and ``{<step>}`` an earlier step's)."""

    stage: str
    wiring: tuple[str, ...]
    title: str
    label: str  # how the report names its model ("before (warm-up) and after RL")


PIPELINE: dict[str, Step] = {
    "align": Step("align", ("output_dir={out}",), "Alignment", "alignment"),
    "warmup": Step("warmup", ("init_from={align}", "output_dir={out}"), "Long-CoT warm-up", "warm-up"),
    "warmup_short": Step("warmup", ("init_from={warmup}", "output_dir={out}"), "Short-CoT warm-up (for merging)",
                         "short warm-up"),
    "curate": Step("curate", ("model={warmup}", "output_dir={out}"), "Curation", "curation"),
    "rl": Step("rl", ("init_from={warmup}", "sources=[{curate}/data.jsonl]", "output_dir={out}"), "RL", "RL"),
    "long2short": Step("long2short", ("long_model={rl}", "short_model={warmup_short}", "output_dir={out}"),
                       "Long2short", "long2short"),
}


@dataclass
class ModelFile:
    """Schema of a model-only YAML (``configs/*/model.yaml``), included by stage configs."""

    model: ModelConfig = field(default_factory=ModelConfig)
