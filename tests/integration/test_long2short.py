"""`vlrl long2short` with every method for a few steps on the tiny model, and `vlrl merge`."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from vlrl.cli import main as cli
from vlrl.config import load_config
from vlrl.models import load_pretrained
from vlrl.stages.long2short import Long2ShortConfig, main


def test_every_method_runs_and_the_report_lists_them(sft_tiny, saved_tiny, tmp_path):
    out = tmp_path / "l2s"
    cfg = load_config(Long2ShortConfig, "configs/tiny/long2short.yaml", [
        f"long_model={sft_tiny}", f"short_model={saved_tiny}", f"output_dir={out}",
        "sources=[synth:shapes?n=6&seed=4&levels=1,synth:arithmetic?n=6&seed=4&levels=1]",
        "eval_sources=[synth:shapes?n=4&seed=999&levels=1,synth:text_rendered?n=2&seed=999&levels=1]",
        "eval_max_new_tokens=12", "sample.n=4", "sample.max_new_tokens=12", "shortest_rs.steps=3",
        "shortest_rs.batch_size=4", "dpo.epochs=1", "dpo.ratio=1.0",
        "rl.overrides=[iterations=1,prompts_per_iteration=2,rollout.k=2,rollout.max_response_tokens=8,"
        "length_penalty.weight=1.0,'sources=[synth:arithmetic?n=10&seed=2&levels=1]']"])
    result = main(cfg)
    for method in ("merge", "shortest_rs", "dpo", "rl"):
        load_pretrained(out / method)  # a normal, loadable checkpoint
    table = result["table"]
    assert set(table["overall"]) == {"long", "short", "merge", "shortest_rs", "dpo", "rl"}
    assert {"image", "text", "text_rendered"} <= set(table)
    md = (out / "report.md").read_text()
    assert all(f"| {m} |" in md for m in ("long", "merge", "shortest_rs", "dpo", "rl")) and (out / "report.png").exists()
    rows = (out / "samples" / "long.jsonl").read_text().splitlines()
    assert len(rows) == 12 and all(len(json.loads(r)["responses"]) == 4 for r in rows)
    from vlrl.eval.efficiency import best_efficiency

    # long2short RL started from the best-efficiency model among those before it
    reports = {m: json.loads((out / "eval" / m / "eval.json").read_text()) for m in ("long", "short", "merge", "shortest_rs", "dpo")}
    assert (out / "rl" / "start.txt").read_text().split()[0] == best_efficiency(reports, "long", cfg.rl.min_token_cut)
    before = load_file(str(sft_tiny / "model.safetensors"))
    dpo = load_file(str(out / "dpo" / "model.safetensors"))
    assert any(not torch.equal(before[k], dpo[k]) for k in before)
    again = main(cfg)  # every method is done: nothing is retrained, the report is rebuilt from the cache
    assert again["table"] == result["table"]


def test_merge_cli_averages_two_models(sft_tiny, saved_tiny, tmp_path):
    assert cli(["merge", str(sft_tiny), str(saved_tiny), "--out", str(tmp_path / "m"), "--modules", "llm"]) == 0
    a, b = load_file(str(sft_tiny / "model.safetensors")), load_file(str(saved_tiny / "model.safetensors"))
    m = load_file(str(tmp_path / "m" / "model.safetensors"))
    k = next(k for k in a if k.startswith("llm.") and a[k].is_floating_point() and not torch.equal(a[k], b[k]))
    assert torch.allclose(m[k], (a[k] + b[k]) / 2)
    e = next(k for k in a if k.startswith("encoder."))
    assert torch.equal(m[e], a[e])


def test_a_stage_evaluation_with_the_same_settings_is_reused_and_equals_a_fresh_one(sft_tiny, tmp_path, monkeypatch):
    """The warm-up stage evaluated its final model on the held-out set: long2short reuses that (no second
    evaluation) only when sources and token limit match, and the reused report is what it would compute."""
    import yaml

    from tests.conftest import evaluated_stage

    from vlrl.eval import heldout
    from vlrl.eval.heldout import stage_evaluation as stage_eval
    from vlrl.stages.long2short import evaluate_models

    sources = ["synth:shapes?n=3&seed=999&levels=1", "synth:arithmetic?n=3&seed=999&levels=1"]
    stage = evaluated_stage(sft_tiny, tmp_path / "warm", sources, 12)
    assert stage_eval(stage, sources, 12) == stage / "eval"
    assert stage_eval(stage, sources, 16) is None and stage_eval(stage, sources[:1], 12) is None
    assert stage_eval(stage, sources, 12, precision="bf16") is None  # the stage ran fp32 (auto, no launcher)
    other = {"eval_sources": sources, "eval_max_new_tokens": 12, "reward": {"name": "math", "kwargs": {}}}
    (stage / "config.yaml").write_text(yaml.safe_dump(other))
    assert stage_eval(stage, sources, 12) is None  # scored with symbolic matching: another pass@1
    (stage / "config.yaml").write_text(yaml.safe_dump({"eval_sources": sources, "eval_max_new_tokens": 12}))
    cfg = load_config(Long2ShortConfig, "configs/tiny/long2short.yaml", [
        f"eval_sources=[{','.join(sources)}]", "eval_max_new_tokens=12", f"output_dir={tmp_path / 'l2s'}"])
    calls = []
    real = heldout.evaluate_held_out
    monkeypatch.setattr(heldout, "evaluate_held_out", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    reused = evaluate_models(cfg, {"long": str(stage), "fresh": str(sft_tiny)}, tmp_path / "l2s")
    assert calls == ["fresh"]  # only the model without a stage evaluation was evaluated
    assert reused["long"] == reused["fresh"]  # the same weights: the reused report is the fresh one
    assert (tmp_path / "l2s" / "eval" / "long" / "records.jsonl").read_text() == (stage / "eval" / "records.jsonl").read_text()
    assert stage_eval(sft_tiny, sources, 12) is None  # sft_tiny has no config.yaml


def test_stage_eval_of_an_rl_run_is_its_last_iteration_when_evaluated(tmp_path):
    import yaml

    from vlrl.eval.heldout import stage_evaluation as stage_eval

    src = ["synth:shapes?n=3&seed=999"]
    for every, expect in ((5, "iter-10"), (3, None)):
        d = tmp_path / f"every{every}"
        for it in (5, 9, 10):
            (d / "eval" / f"iter-{it}").mkdir(parents=True)
            (d / "eval" / f"iter-{it}" / "eval.json").write_text("{}")
            (d / "eval" / f"iter-{it}" / "records.jsonl").write_text("")
        (d / "config.yaml").write_text(yaml.safe_dump({"eval_sources": src, "eval_max_new_tokens": 256,
                                                       "iterations": 10, "eval_every": every}))
        assert stage_eval(d, src, 256) == (d / "eval" / expect if expect else None)


def test_shortest_rs_time_limit_counts_the_sampling_and_ends_the_fine_tuning(sft_tiny, tmp_path):
    """A budget the sampling alone spends: the fine-tuning gets none left, takes one step and still saves
    a finished model (the rejection-sampling baseline at another run's wall time)."""
    out = tmp_path / "rs"
    cfg = load_config(Long2ShortConfig, "configs/tiny/long2short.yaml", [
        f"long_model={sft_tiny}", f"output_dir={out}", "methods=[shortest_rs]", "eval_sources=[]",
        "sources=[synth:shapes?n=6&seed=4&levels=1,synth:arithmetic?n=6&seed=4&levels=1]", "sample.n=4",
        "sample.max_new_tokens=12", "shortest_rs.steps=1000", "shortest_rs.batch_size=4",
        "shortest_rs.sample_from=long", "shortest_rs.time_limit_minutes=0.0"])
    main(cfg)
    steps = [json.loads(x)["step"] for x in (out / "shortest_rs" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]
    load_pretrained(out / "shortest_rs")
