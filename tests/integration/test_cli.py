"""The CLI as a user runs it (subprocesses, offline)."""

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def vlrl(*args, env=None, check=True):
    e = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    r = subprocess.run([sys.executable, "-m", "vlrl.cli", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"vlrl {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def test_help_answers_questions():
    out = vlrl("--help").stdout
    for cmd in ("data", "warmup", "infer", "encoders"):
        assert cmd in out
    assert "--question" in vlrl("infer", "--help").stdout
    assert "--levels" in vlrl("data", "synth", "--help").stdout
    shown = vlrl("rl", "--config", "configs/tiny/rl.yaml", "--show-config", "loss.name=grpo").stdout
    assert "prompts_per_iteration: 64" in shown and "name: grpo" in shown and "tau: 0.1" in shown


def test_encoders_list_includes_an_installed_plugin(tmp_path, monkeypatch):
    from tests.unit.test_registry import install_fake_plugin

    install_fake_plugin(tmp_path, monkeypatch)
    out = vlrl("encoders", "list", env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}).stdout
    assert "open_clip" in out and "hf_vision" in out
    assert "fake_conv" in out and "fake-vlrl-plugin" in out
    assert "pixel_shuffle" in vlrl("projectors", "list").stdout


def test_data_synth_writes_jsonl_and_images(tmp_path):
    vlrl("data", "synth", "--task", "text_rendered", "--n", "3", "--levels", "2", "--out", str(tmp_path))
    rows = [json.loads(x) for x in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["difficulty"] == 2 for r in rows)
    assert (tmp_path / rows[0]["images"][0]).exists()


def test_bad_input_gives_a_clear_error(tmp_path):
    r = vlrl("warmup", "--config", "configs/tiny/warmup.yaml", "optim.lrr=1", check=False)
    assert r.returncode == 2 and "optim.lrr" in r.stderr and "Traceback" not in r.stderr
    r = vlrl("infer", "--model", str(tmp_path), "--question", "hi", check=False)
    assert r.returncode == 2 and "is not a saved vlrl model" in r.stderr
    r = vlrl("data", "synth", "--task", "shapes", "--n", "2", "--levels", "9", "--out", str(tmp_path), check=False)
    assert r.returncode == 2 and "1-5" in r.stderr


def test_infer_streams_an_answer_for_0_1_and_2_images(saved_tiny, tmp_path):
    from vlrl.data.synth import generate
    paths = []
    for i, s in enumerate(generate("shapes", 2)):
        s.images[0].save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    from vlrl import Predictor
    predictor = Predictor.load(str(saved_tiny), device="cpu")
    for images in ([], paths[:1], paths):
        args = [x for p in images for x in ("--image", p)]
        r = vlrl("infer", "--model", str(saved_tiny), "--question", "How many shapes?", "--max-new-tokens", "6", *args)
        expected = predictor.answer("How many shapes?", images=images, max_new_tokens=6)
        assert r.stdout == expected + "\n"  # the streamed pieces add up to the Python API's answer
    r = vlrl("infer", "--model", str(saved_tiny), "--question", "x", "--image", str(tmp_path / "nope.png"),
             check=False)
    assert r.returncode == 2 and "nope.png" in r.stderr and "does not exist" in r.stderr


def test_warmup_data_programmatic_and_rejection_sampling(saved_tiny, tmp_path):
    vlrl("warmup-data", "--synth", "shapes", "--synth", "arithmetic", "--n", "5", "--out", str(tmp_path / "p"))
    rows = [json.loads(x) for x in (tmp_path / "p" / "data.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(r["response"].startswith("Plan:") for r in rows)
    r = vlrl("warmup-data", "--model", str(saved_tiny), "--data", str(tmp_path / "p" / "data.jsonl"),
             "--samples", "2", "--max-new-tokens", "8", "--out", str(tmp_path / "rs"))
    rates = json.loads((tmp_path / "rs" / "pass_rates.json").read_text())
    assert set(rates) == {r["id"] for r in rows} and "prompts solved" in r.stdout
    r = vlrl("warmup-data", "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "either --synth" in r.stderr


def test_plot_overlays_runs(tmp_path):
    import json

    from vlrl.cli import main

    for name, acc in (("a", 0.2), ("b", 0.4)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "accuracy": acc + 0.01 * s}) + "\n" for s in range(1, 4)))
    out = tmp_path / "cmp.png"
    assert main(["plot", "--run", f"kimi={tmp_path / 'a'}", "--run", f"grpo={tmp_path / 'b'}", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot", "--run", str(tmp_path / "a"), "--out", str(out)]) == 2  # NAME=DIR is required
    from vlrl.eval.curves import plot_runs

    # --max-step keeps steps <= it: none left at 0 (nothing to plot), steps 1-2 at 2
    assert plot_runs({"a": tmp_path / "a"}, ["accuracy"], tmp_path / "none.png", max_step=0) is None
    assert main(["plot", "--run", f"a={tmp_path / 'a'}", "--max-step", "2", "--out", str(tmp_path / "two.png")]) == 0
    assert (tmp_path / "two.png").stat().st_size > 1000 and not (tmp_path / "none.png").exists()
