"""`vlrl pipeline` end to end with minimal steps: every stage's output loads into the next, the report
has every section, and a re-run skips finished stages."""

from __future__ import annotations

from vlrl.config import load_config
from vlrl.stages.pipeline import PipelineConfig, main

EVAL = "[synth:shapes?n=4&seed=999&levels=1,synth:text_rendered?n=2&seed=999&levels=1]"
FAST = {
    "align": ["phases=[{steps: 2, train: [projector], lr: 1e-3}, {steps: 2}]", "data.sources=[synth:shapes?n=16&seed=1]"],
    "warmup": ["phases=[{steps: 3}]", "data.sources=[synth:shapes?n=16&seed=1&style=short,synth:arithmetic?n=16&seed=1&style=short]",
               f"eval_sources={EVAL}", "eval_max_new_tokens=8"],
    "warmup_short": ["phases=[{steps: 2}]", "data.sources=[synth:arithmetic?n=16&seed=1&style=short]", "eval_sources=[]"],
    "curate": ["sources=[synth:curation_pool?n=40&seed=5]", "hack.probe.n=2", "difficulty.probe.n=2",
               "difficulty.probe.max_new_tokens=8", "difficulty.drop_trivial=false",
               "difficulty.drop_unsolved=false", "selection.target=0"],
    "rl": ["iterations=1", "prompts_per_iteration=2", "rollout.k=2", "rollout.max_response_tokens=8", "eval_every=1",
           f"eval_sources={EVAL}", "eval_max_new_tokens=8"],
    # an untrained model has no correct samples for shortest_rs / dpo (tested in test_long2short.py)
    "long2short": ["methods=[merge,rl]", "sources=[synth:arithmetic?n=4&seed=4&levels=1]", f"eval_sources={EVAL}", "eval_max_new_tokens=8",
                   "sample.n=2", "sample.max_new_tokens=8", "shortest_rs.steps=2", "shortest_rs.batch_size=2",
                   "dpo.epochs=1", "dpo.ratio=1.0", "rl.overrides=[iterations=1,prompts_per_iteration=2,rollout.k=2,"
                   "rollout.max_response_tokens=8,'sources=[synth:arithmetic?n=4&seed=2&levels=1]']"],
}


def _cfg(tmp_path):
    overrides = [f"root={tmp_path}", "name=t"]
    for stage, items in FAST.items():
        overrides.append(f"{stage}.overrides=[" + ",".join(repr(x) for x in items) + "]")
    return load_config(PipelineConfig, "configs/tiny/pipeline.yaml", overrides)


def test_pipeline_end_to_end_and_skip_on_rerun(tmp_path, capsys):
    run = main(_cfg(tmp_path))
    for stage in ("align", "warmup", "warmup_short", "curate", "rl", "long2short"):
        assert (run / stage / ".done").is_file(), stage
        assert (run / stage / "config.yaml").is_file(), stage  # the resolved config of each stage
    report = (run / "report.md").read_text()
    for section in ("## Stages", "## Long-CoT warm-up", "## Curation", "## RL", "before (warm-up) and after RL",
                    "Held-out pass@1 over the RL iterations", "rl/heldout.png", "| change 0 -> 1 (points) |",
                    "## Long2short", "long2short/report.png"):
        assert section in report, section
    capsys.readouterr()
    main(_cfg(tmp_path))
    out = capsys.readouterr().out
    assert out.count("done earlier, skipped") == 6


def test_step_paths_names_step_directories_and_leaves_other_braces():
    from pathlib import Path

    from vlrl.stages.pipeline import step_paths

    run = Path("runs/x")
    assert step_paths("sources=[{curate}/data.jsonl,synth:a?n=3]", run, "rl") == "sources=[runs/x/curate/data.jsonl,synth:a?n=3]"
    assert step_paths("output_dir={out}", run, "rl") == "output_dir=runs/x/rl"
    assert step_paths("phases=[{steps: 100}]", run, "warmup") == "phases=[{steps: 100}]"
    assert step_paths("x={nostep}", run, "rl") == "x={nostep}"


def test_pipeline_seed_goes_to_every_stage_before_its_own_overrides(tmp_path, monkeypatch):
    import types

    import vlrl.stages.pipeline as pipeline
    from vlrl.stages.pipeline import StageRun, run_stage

    seen = []
    fake = types.SimpleNamespace(main=lambda cfg: None)
    monkeypatch.setattr(pipeline, "importlib", types.SimpleNamespace(import_module=lambda name: fake))
    monkeypatch.setattr(pipeline, "load_config", lambda schema, path, overrides: seen.append(overrides))
    for stage in ("warmup", "rl"):
        setattr(fake, pipeline.STAGES[pipeline.PIPELINE[stage].stage].schema, object)
    for d in ("warmup", "rl", "other/rl"):  # where the stages (faked here) would write
        (tmp_path / d).mkdir(parents=True)
    run_stage("warmup", StageRun("w.yaml", ["lr=1"]), tmp_path, print, seed=3)
    run_stage("rl", StageRun("r.yaml", ["seed=9"]), tmp_path, print, seed=3)
    run_stage("rl", StageRun("r.yaml", []), tmp_path / "other", print)
    assert len(seen) == 3
    assert seen[0][-2:] == ["seed=3", "lr=1"]
    assert seen[1][-2:] == ["seed=3", "seed=9"]  # the stage's own seed comes later, so it wins
    assert not any(o.startswith("seed=") for o in seen[2])  # no pipeline seed: the stages' own defaults
