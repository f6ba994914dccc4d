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
import re
import time
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from vlrl.config import load_config, save_config
from vlrl.distributed import barrier, is_main
from vlrl.stages import PIPELINE, STAGES


@dataclass
class StageRun:
    config: str = ""  # the stage's YAML
    # key=value, applied after the pipeline's wiring; {<step>} / {out} name a step's / this step's directory
    overrides: List[str] = field(default_factory=list)
    enabled: bool = True


def _step_field(name: str):
    return field(default_factory=lambda: StageRun(f"configs/tiny/{name}.yaml"))


# one field per step of PIPELINE (the table in vlrl/stages/__init__.py), so a new step needs no edit here
PipelineConfig = make_dataclass("PipelineConfig", [("name", str, "tiny"), ("root", str, "runs"),
                                                   ("seed", Optional[int], None)] +
                                [(step, StageRun, _step_field(step)) for step in PIPELINE])
PipelineConfig.__doc__ = ("``name`` / ``root``: the run directory ``<root>/<name>``; ``seed``: when set, every stage's "
                          "``seed`` (model init, shuffling, sampling; the synthetic data keep their own seeds, so "
                          "pipeline seeds share the problems); one StageRun per pipeline step.")
PipelineConfig.__module__ = __name__


def step_paths(text: str, run: Path, step: str) -> str:
    """``text`` with ``{out}`` (``step``'s directory) and ``{<step>}`` (that step's) as paths inside ``run``;
    other braces (``phases=[{steps: 100}]``) are left alone."""
    dirs = {"out": str(run / step), **{s: str(run / s) for s in PIPELINE}}
    return re.sub(r"\{(\w+)\}", lambda m: dirs.get(m.group(1), m.group(0)), text)


def wiring(run: Path) -> Dict[str, List[str]]:
    """The overrides that chain the steps by explicit paths inside ``run``."""
    return {step: [step_paths(w, run, step) for w in spec.wiring] for step, spec in PIPELINE.items()}


def run_stage(name: str, spec: StageRun, run: Path, log: Callable[[str], None], seed: Optional[int] = None) -> float:
    """Run one stage unless its ``.done`` marker exists; returns seconds spent (0 when skipped). ``seed``
    (the pipeline's) comes before the stage's own overrides, so a stage can still set its own."""
    out = run / name
    if (out / ".done").exists():
        log(f"{name}: done earlier, skipped")
        return 0.0
    stage = STAGES[PIPELINE[name].stage]
    mod = importlib.import_module(stage.module)
    overrides = [step_paths(o, run, name) for o in spec.overrides]  # "sources=[{curate}/data.jsonl,...]"
    seeded = [] if seed is None else [f"seed={seed}"]
    cfg = load_config(getattr(mod, stage.schema), spec.config, [*wiring(run)[name], *seeded, *overrides])
    log(f"{name}: {spec.config} -> {out}")
    t = time.time()
    mod.main(cfg)
    barrier()
    if is_main():
        (out / ".done").write_text(json.dumps({"seconds": round(time.time() - t, 1)}))
    return time.time() - t


def main(cfg: PipelineConfig) -> Path:
    from vlrl.eval.pipeline_report import write_pipeline_report

    run = Path(cfg.root) / cfg.name
    if is_main():
        save_config(cfg, run / "pipeline.yaml")

    def log(msg: str) -> None:
        if is_main():
            print(f"[pipeline] {msg}", flush=True)

    t0 = time.time()
    for name in PIPELINE:
        spec = getattr(cfg, name)
        if spec.enabled:
            spent = run_stage(name, spec, run, log, cfg.seed)
            if spent:
                log(f"{name}: finished in {spent / 60:.1f} min")
    if is_main():
        report = write_pipeline_report(run, [n for n in PIPELINE if getattr(cfg, n).enabled])
        log(f"all stages done in {(time.time() - t0) / 60:.1f} min; report: {report}")
    barrier()
    return run
