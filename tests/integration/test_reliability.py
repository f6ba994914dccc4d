"""Nothing lost, nothing run (issue 18): a NaN reward, an exploding learning rate and a NaN gradient
behind a finite loss each stop the run with a clear error before anything is saved, and the last good
checkpoint stays the latest; a raising reward plug-in is a counted error; a resumed run logs each step
once."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.integration.test_rl import rl_cfg
from tests.integration.test_warmup import warmup_cfg
from vlrl.checkpoint import checkpoint_dirs, latest_checkpoint
from vlrl.guards import NonFiniteError
from vlrl.models.vlm import VisionLanguageModel
from vlrl.rewards.base import RewardResult
from vlrl.stages import rl, warmup



def saved_weights(out: Path) -> list[Path]:
    return sorted(out.rglob("*.safetensors"))


def all_finite(path: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in load_file(str(path)).values() if t.is_floating_point())


def test_rl_stops_on_a_nan_reward_naming_the_reward_and_samples(sft_tiny, tmp_path, capsys, register_reward):
    from vlrl.cli import main as cli

    register_reward("test_nan", lambda **_: (lambda response, sample: RewardResult(float("nan"))))

    rc = cli(["rl", "--config", "configs/tiny/rl.yaml", f"init_from={sft_tiny}", f"output_dir={tmp_path}",
              "sources=[synth:arithmetic?n=30&seed=2&levels=1]", "eval_sources=[]", "prompts_per_iteration=3",
              "rollout.k=4", "rollout.max_response_tokens=12", "minibatch_size=8", "iterations=2", "save_every=1",
              "reward.name=test_nan", "reward.kwargs={}"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "vlrl: error: rl iteration 1: reward 'test_nan' returned a non-finite value for 12 of 12" in err
    assert "arithmetic-" in err  # names samples
    assert saved_weights(tmp_path) == [] and latest_checkpoint(tmp_path) is None


def test_rl_stops_on_an_exploding_learning_rate_and_saves_nothing_non_finite(sft_tiny, tmp_path):
    with pytest.raises(NonFiniteError, match=r"rl iteration \d+.*(loss|gradient norm|weights)"):
        rl.main(rl_cfg(sft_tiny, tmp_path, "iterations=4", "save_every=1", "optim.lr=1e10"))
    assert not (tmp_path / "model.safetensors").exists()
    assert all(all_finite(p) for p in saved_weights(tmp_path))


def test_sft_nan_gradient_behind_a_finite_loss_stops_before_the_step(tmp_path, monkeypatch):
    """From the 3rd optimizer step on, the loss gains 0 * sqrt(0 * sum(w)): the value is unchanged
    (finite) but d/dw = 0 * inf = NaN. The run stops at step 3 naming the gradient; step-2 stays the
    latest checkpoint, finite, and a resume without the fault finishes from it."""
    forward, calls = VisionLanguageModel.forward, {"n": 0}

    def faulty(self, batch, **kw):
        out = forward(self, batch, **kw)
        if self.training:
            calls["n"] += 1
            if calls["n"] >= 3:  # one forward per step: length_split 1, grad_accum 1
                w = next(self.parameters())
                out.loss = out.loss + 0.0 * torch.sqrt(0.0 * w.sum())
        return out

    common = ["phases=[{steps: 4}]", "save_every=2", "length_split=1", "log_every=1"]
    monkeypatch.setattr(VisionLanguageModel, "forward", faulty)
    with pytest.raises(NonFiniteError, match=r"warmup step 3 \(finite loss [\d.]+\): gradient norm is nan"):
        warmup.main(warmup_cfg(tmp_path, *common))
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-2"]
    assert all(all_finite(p) for p in saved_weights(tmp_path)) and not (tmp_path / "model.safetensors").exists()
    monkeypatch.setattr(VisionLanguageModel, "forward", forward)
    out = warmup.main(warmup_cfg(tmp_path, *common))
    assert all_finite(out / "model.safetensors")
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 4


def test_save_refuses_a_model_with_a_nan_weight(tmp_path):
    from tests.conftest import tiny_model_config
    from vlrl.models import build_vlm, save_pretrained

    model, proc = build_vlm(tiny_model_config())
    with torch.no_grad():
        next(model.projector.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match="refusing to save .* non-finite weights"):
        save_pretrained(model, proc, tmp_path / "m")
    assert not (tmp_path / "m").exists() or list((tmp_path / "m").iterdir()) == []


def test_a_raising_reward_plugin_is_counted_and_reported_on_the_console(sft_tiny, tmp_path, capsys, register_reward):
    def raises(response, sample):
        raise RuntimeError("grader offline")

    register_reward("test_raising_plugin", lambda **_: raises)
    out = rl.main(rl_cfg(sft_tiny, tmp_path, "iterations=1", "reward.name=test_raising_plugin", "reward.kwargs={}",
                         "sources=[synth:arithmetic?n=30&seed=2&levels=1]"))
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["verifier_errors"] == 12 and row["reward"] == 0.0  # 3 prompts x k 4, each scored 0 and counted
    assert ("[rl] it 1: 12 verifier errors, e.g. reward 'test_raising_plugin' on sample 'arithmetic-"
            in capsys.readouterr().out)


class Killed(Exception):
    """Stands in for a kill -9 between a checkpoint and the next one."""


def test_sft_resume_logs_each_step_once(tmp_path, monkeypatch):
    """save_every 2, killed in step 4 (steps 1-3 logged, checkpoint step-2): the resumed run redoes steps
    3-6 and metrics.jsonl holds steps 1..6 once each, in order."""
    forward, calls = VisionLanguageModel.forward, {"n": 0}

    def dies_at_step_4(self, batch, **kw):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 4:
                raise Killed
        return forward(self, batch, **kw)

    common = ["phases=[{steps: 6}]", "save_every=2", "length_split=1", "log_every=1"]
    monkeypatch.setattr(VisionLanguageModel, "forward", dies_at_step_4)
    with pytest.raises(Killed):
        warmup.main(warmup_cfg(tmp_path, *common))
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    monkeypatch.setattr(VisionLanguageModel, "forward", forward)
    out = warmup.main(warmup_cfg(tmp_path, *common))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(a["time"] <= b["time"] for a, b in zip(rows, rows[1:]))  # time goes on after the resume


def test_rl_resume_logs_each_iteration_once(sft_tiny, tmp_path, monkeypatch):
    run, calls = rl.run_iteration, {"n": 0}

    def dies_in_iteration_4(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Killed
        return run(*args, **kw)

    monkeypatch.setattr(rl, "run_iteration", dies_in_iteration_4)
    with pytest.raises(Killed):
        rl.main(rl_cfg(sft_tiny, tmp_path, "iterations=5", "save_every=2"))
    monkeypatch.setattr(rl, "run_iteration", run)
    out = rl.main(rl_cfg(sft_tiny, tmp_path, "iterations=5", "save_every=2"))
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]


DAMAGE = {
    "truncated weights": lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:999]),
    "empty weights": lambda d: (d / "model.safetensors").write_bytes(b""),
    "truncated trainer.pt": lambda d: (d / "trainer.pt").write_bytes((d / "trainer.pt").read_bytes()[:500]),
    "invalid state": lambda d: (d / "trainer_state.json").write_text('{"step": 4, "data":'),
}


def test_a_damaged_latest_checkpoint_is_reported_and_the_previous_one_used(tmp_path, capsys):
    import shutil

    from vlrl.checkpoint import checkpoint_damage

    common = ["phases=[{steps: 6}]", "save_every=2", "length_split=1", "log_every=1"]
    warmup.main(warmup_cfg(tmp_path / "run", *common, "max_steps_per_run=4"))
    ckpts = checkpoint_dirs(tmp_path / "run")
    assert [p.name for p in ckpts] == ["step-2", "step-4"] and checkpoint_damage(ckpts[-1]) is None
    for name, damage in DAMAGE.items():  # each kind of damage is detected
        copy = tmp_path / name.replace(" ", "_")
        shutil.copytree(ckpts[-1], copy)
        damage(copy)
        assert checkpoint_damage(copy) is not None, name
    DAMAGE["truncated weights"](ckpts[-1])
    capsys.readouterr()
    out = warmup.main(warmup_cfg(tmp_path / "run", *common))
    logs = capsys.readouterr()
    assert "step-4 is damaged and skipped: model.safetensors is unreadable" in logs.err
    assert "resuming from" in logs.out and "step-2 (step 2)" in logs.out
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    assert all_finite(out / "model.safetensors")


def test_resume_under_a_changed_learning_rate_is_an_error_unless_allowed(tmp_path):
    common = ["phases=[{steps: 4}]", "save_every=2", "length_split=1", "optim.lr=2e-3"]
    warmup.main(warmup_cfg(tmp_path, *common, "max_steps_per_run=2"))
    changed = [c.replace("optim.lr=2e-3", "optim.lr=3e-4") for c in common]
    with pytest.raises(ValueError, match=r"config differs from the checkpoint's in optim.lr: 0.002 -> 0.0003\. "):
        warmup.main(warmup_cfg(tmp_path, *changed))
    warmup.main(warmup_cfg(tmp_path, *common, "phases=[{steps: 6}]", "max_steps_per_run=2"))  # longer: allowed
    out = warmup.main(warmup_cfg(tmp_path, *changed, "phases=[{steps: 6}]", "resume_allow_changes=true"))
    (row,) = [json.loads(x) for x in (out / "resumes.jsonl").read_text().splitlines()]
    assert row["step"] == 4 and row["changes"] == {"optim.lr": [0.002, 0.0003]}
    assert (out / "model.safetensors").exists()


def test_rl_resume_under_a_changed_loss_setting_is_an_error(sft_tiny, tmp_path):
    rl.main(rl_cfg(sft_tiny, tmp_path, "iterations=1", "save_every=1"))
    with pytest.raises(ValueError, match=r"rollout.k: 4 -> 2"):
        rl.main(rl_cfg(sft_tiny, tmp_path, "iterations=2", "save_every=1", "rollout.k=2"))


def bad_rows_jsonl(tmp_path: Path) -> Path:
    """40 good text rows, then a placeholder mismatch, a corrupt image and a prompt past max_length."""
    from PIL import Image

    from vlrl.data.synth import generate

    rows = [{"id": f"ok-{i}", "question": s.question, "answer": s.answer, "response": s.response}
            for i, s in enumerate(generate("arithmetic", 40, seed=1, levels="1", style="long"))]
    Image.new("RGB", (48, 48), "red").save(tmp_path / "red.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    rows += [{"id": "two-tags", "question": "<image> and <image>: how many?", "images": ["red.png"], "answer": "1",
              "response": "Answer: 1"},
             {"id": "corrupt", "question": "How many shapes?", "images": ["broken.png"], "answer": "1",
              "response": "Answer: 1"},
             {"id": "too-long", "question": "1 + 1 = ? " * 200, "answer": "2", "response": "Answer: 2"}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_rows_are_found_at_load_time_and_counted(tmp_path, capsys):
    data = bad_rows_jsonl(tmp_path)
    out = warmup.main(warmup_cfg(tmp_path / "w", f"data.sources=[{data}]", "phases=[{steps: 12}]"))
    logs = capsys.readouterr().out
    assert "[data] loaded 40 samples, skipped 3 bad rows" in logs
    assert "sample 'two-tags': 2 '<image>' placeholder(s) in the prompt but 1 image(s)" in logs
    assert "sample 'corrupt'" in logs and "corrupt or not an image" in logs
    assert "sample 'too-long': prompt is" in logs
    assert (out / "model.safetensors").exists()  # 12 steps of 8 draw every row more than twice: nothing dies
    with pytest.raises(ValueError, match=r"train.jsonl: sample 'two-tags'.*on_bad_row=skip"):
        warmup.main(warmup_cfg(tmp_path / "e", f"data.sources=[{data}]", "data.on_bad_row=error"))
    assert not (tmp_path / "e" / "metrics.jsonl").exists()  # stopped at load, before any step


def test_rl_skips_bad_rows_at_load_time(sft_tiny, tmp_path, capsys):
    data = bad_rows_jsonl(tmp_path)
    rl.main(rl_cfg(sft_tiny, tmp_path / "rl", "iterations=2", f"sources=[{data}]", "prompts_per_iteration=20"))
    assert "[data] loaded 40 samples, skipped 3 bad rows" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("batch_size=0", "batch_size must be at least 1, got 0"),
    ("phases=[{steps: -3}]", r"phases\[0\].steps must be at least 1, got -3"),
])
def test_supervised_sizes_that_would_do_nothing_are_errors(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        warmup.main(warmup_cfg(tmp_path, override))


@pytest.mark.parametrize("override, message", [
    ("iterations=0", "rl: iterations must be at least 1, got 0"),
    ("minibatch_size=0", "rl: minibatch_size must be at least 1, got 0"),
    ("rollout.k=1", "rl: rollout.k=1 with loss 'kimi'.*every advantage is 0 and nothing trains"),
])
def test_rl_sizes_that_would_train_nothing_are_errors(sft_tiny, tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        rl.main(rl_cfg(sft_tiny, tmp_path, override))
    assert saved_weights(tmp_path) == []


def test_eval_of_an_empty_file_and_negative_max_new_tokens_are_clear_errors(saved_tiny, tmp_path, capsys):
    from vlrl.cli import main as cli

    (tmp_path / "empty.jsonl").write_text("")
    assert cli(["eval", "--model", str(saved_tiny), "--data", str(tmp_path / "empty.jsonl")]) == 2
    assert "vlrl: error: no samples loaded from" in capsys.readouterr().err
    assert cli(["infer", "--model", str(saved_tiny), "--question", "1 + 1?", "--max-new-tokens", "-5"]) == 2
    assert "vlrl: error: max_new_tokens must be at least 1, got -5" in capsys.readouterr().err


def test_sft_exploding_learning_rate_is_a_clear_cli_error_and_saves_nothing_non_finite(tmp_path, capsys):
    from tests.integration.test_warmup import DATA
    from vlrl.cli import main as cli

    rc = cli(["warmup", "--config", "configs/tiny/warmup.yaml", "init_from=null", "batch_size=8", "trackers=[]",
              f"output_dir={tmp_path}", DATA, "eval_sources=[]", "optim.warmup_steps=0", "optim.lr=1e10",
              "phases=[{steps: 6}]", "save_every=1", "length_split=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "vlrl: error: warmup step " in err and "Traceback" not in err
    assert "is nan" in err or "is inf" in err
    assert not (tmp_path / "model.safetensors").exists()
    assert all(all_finite(p) for p in saved_weights(tmp_path))
