"""The whole recipe as one command, in one run directory.

    vlrl pipeline --config configs/tiny/pipeline.yaml [name=my_run rl.overrides=[iterations=5]]

Stages, each reading the previous ones' outputs by path under ``<root>/<name>/``:

    align -> warmup (long CoT) -> warmup_short (short CoT fine-tuned from the long-CoT model, for
    merging) -> curate (probes with the warm-up model) -> rl (on the curated prompts) -> long2short
    (from the RL model) -> report

Curation runs after the warm-up because its difficulty and easy-to-hack probes need a model that can
answer (k1.5 uses an SFT model for them). Each stage's resolved config is saved in its directory; a
finished stage leaves ``.done`` and is skipped on a re-run; an interrupted one resumes through its own
checkpoints / caches. The end writes ``report.md`` with every stage's tables and plots.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List

from vlrl.config import load_config, save_config
from vlrl.distributed import barrier, world


@dataclass
class StageRun:
    config: str = ""  # the stage's YAML
    overrides: List[str] = field(default_factory=list)  # key=value, applied after the pipeline's wiring
    enabled: bool = True


def _stages() -> Dict[str, StageRun]:
    return {name: StageRun(f"configs/tiny/{name}.yaml") for name in
            ("align", "warmup", "warmup_short", "curate", "rl", "long2short")}


@dataclass
class PipelineConfig:
    name: str = "tiny"
    root: str = "runs"
    align: StageRun = field(default_factory=lambda: _stages()["align"])
    warmup: StageRun = field(default_factory=lambda: _stages()["warmup"])
    warmup_short: StageRun = field(default_factory=lambda: _stages()["warmup_short"])
    curate: StageRun = field(default_factory=lambda: _stages()["curate"])
    rl: StageRun = field(default_factory=lambda: _stages()["rl"])
    long2short: StageRun = field(default_factory=lambda: _stages()["long2short"])


ORDER = ("align", "warmup", "warmup_short", "curate", "rl", "long2short")
MODULES = {"align": ("align", "AlignConfig"), "warmup": ("warmup", "WarmupConfig"),
           "warmup_short": ("warmup", "WarmupConfig"), "curate": ("curate", "CurateConfig"),
           "rl": ("rl", "RLConfig"), "long2short": ("long2short", "Long2ShortConfig")}


def wiring(run: Path) -> Dict[str, List[str]]:
    """The overrides that chain the stages by explicit paths inside ``run``."""
    return {
        "align": [f"output_dir={run / 'align'}"],
        "warmup": [f"init_from={run / 'align'}", f"output_dir={run / 'warmup'}"],
        "warmup_short": [f"init_from={run / 'warmup'}", f"output_dir={run / 'warmup_short'}"],
        "curate": [f"model={run / 'warmup'}", f"output_dir={run / 'curate'}"],
        "rl": [f"init_from={run / 'warmup'}", f"sources=[{run / 'curate' / 'data.jsonl'}]", f"output_dir={run / 'rl'}"],
        "long2short": [f"long_model={run / 'rl'}", f"short_model={run / 'warmup_short'}",
                       f"output_dir={run / 'long2short'}"],
    }


def run_stage(name: str, spec: StageRun, run: Path, log: Callable[[str], None]) -> float:
    """Run one stage unless its ``.done`` marker exists; returns seconds spent (0 when skipped)."""
    out = run / name
    if (out / ".done").exists():
        log(f"{name}: done earlier, skipped")
        return 0.0
    module, schema = MODULES[name]
    mod = importlib.import_module(f"vlrl.stages.{module}")
    cfg = load_config(getattr(mod, schema), spec.config, [*wiring(run)[name], *spec.overrides])
    log(f"{name}: {spec.config} -> {out}")
    t = time.time()
    mod.main(cfg)
    barrier()
    if world()[0] == 0:
        (out / ".done").write_text(json.dumps({"seconds": round(time.time() - t, 1)}))
    return time.time() - t


def main(cfg: PipelineConfig) -> Path:
    from vlrl.eval.pipeline_report import write_pipeline_report

    run = Path(cfg.root) / cfg.name
    if world()[0] == 0:
        save_config(cfg, run / "pipeline.yaml")

    def log(msg: str) -> None:
        if world()[0] == 0:
            print(f"[pipeline] {msg}", flush=True)

    t0 = time.time()
    for name in ORDER:
        spec = getattr(cfg, name)
        if spec.enabled:
            spent = run_stage(name, spec, run, log)
            if spent:
                log(f"{name}: finished in {spent / 60:.1f} min")
    if world()[0] == 0:
        report = write_pipeline_report(run, [n for n in ORDER if getattr(cfg, n).enabled])
        log(f"all stages done in {(time.time() - t0) / 60:.1f} min; report: {report}")
    barrier()
    return run
