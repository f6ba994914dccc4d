"""`vlrl curate` end to end on a small planted pool with the tiny SFT model."""

from __future__ import annotations

import json

from vlrl.config import load_config
from vlrl.data import load_samples
from vlrl.stages.curate import CurateConfig, main

ROOT_CFG = "configs/tiny/curate.yaml"


def _cfg(model, out, *extra):
    return load_config(CurateConfig, ROOT_CFG, [
        "sources=[synth:curation_pool?n=80&seed=5]", "model=" + (str(model) if model else "''"), f"output_dir={out}",
        "hack.probe.n=4", "difficulty.probe.n=3", "difficulty.probe.max_new_tokens=12", "selection.target=20",
        *extra])


def test_curate_filters_selects_and_resumes_from_cache(sft_tiny, tmp_path):
    out = tmp_path / "curate"
    rep = main(_cfg(sft_tiny, out))
    steps = dict(rep["funnel"])
    assert steps["pool"] == 80 and steps["selected"] <= 20
    kinds = rep["kinds"]
    for kind, reason in (("choice", "multiple_choice"), ("true_false", "true_false"), ("proof", "proof"),
                         ("no_reference", "no_reference")):
        assert kinds[kind]["by:" + reason] == kinds[kind]["total"] and kinds[kind]["selected"] == 0
    assert kinds["regular"].get("by:multiple_choice", 0) == 0
    assert {"report.json", "report.md", "report.png", "data.jsonl", "removed.jsonl"} <= {p.name for p in out.iterdir()}
    md = (out / "report.md").read_text()
    assert "Removal reasons" in md and "Planted kinds" in md
    curated = load_samples(str(out / "data.jsonl"))
    assert len(curated) == steps["selected"]
    for s in curated:
        assert 0.0 <= s.meta["pass_rate"] < 1.0  # trivial prompts dropped
        assert {"domain", "discipline", "modality", "answer_type", "difficulty"} <= set(s.meta["tags"])
    lines = {p.name: len(p.read_text().splitlines()) for p in (out / "cache").iterdir()}
    rep2 = main(_cfg(sft_tiny, out))  # a re-run generates nothing new: the cache files do not grow
    assert {p.name: len(p.read_text().splitlines()) for p in (out / "cache").iterdir()} == lines
    assert rep2["funnel"] == rep["funnel"]


def test_curate_rules_only_needs_no_model(tmp_path):
    rep = main(_cfg("", tmp_path / "c", "hack.enabled=false", "difficulty.enabled=false", "selection.target=0",
                    "filters.no_reference=critic"))
    assert rep["kinds"]["no_reference"]["selected"] == rep["kinds"]["no_reference"]["total"]
    rows = [json.loads(x) for x in (tmp_path / "c" / "data.jsonl").read_text().splitlines()]
    assert all(r["meta"]["reward"] == "critic" for r in rows if r["meta"]["kind"] == "no_reference")
