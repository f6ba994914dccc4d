"""The SFT stage end to end on the tiny config: learns, saves a loadable model, answers."""

import json

import pytest

from tests.conftest import TINY_MODEL
from vlrl.config import load_config
from vlrl.stages.warmup import WarmupConfig, main


@pytest.mark.slow
def test_warmup_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    cfg = load_config(WarmupConfig, TINY_MODEL.parent / "warmup.yaml", [
        "steps=40", "batch_size=16", "log_every=1", f"output_dir={tmp_path / 'w'}",
        "data.sources=[synth:shapes?n=200&seed=1&levels=1,synth:arithmetic?n=200&seed=1&levels=1]",
        "eval_sources=[synth:shapes?n=2&seed=9&levels=1]", "show_examples=2",
    ])
    out = main(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert (out / "config.yaml").exists() and (out / "model.safetensors").exists()
    from vlrl import Predictor
    p = Predictor.load(str(out), device="cpu")
    assert isinstance(p.answer("What is 1 + 2?", max_new_tokens=4), str)
