"""The supervised stages end to end on the tiny config: learning, freezing phases, checkpoints, exact resume."""

import json

import pytest
import torch

from tests.conftest import TINY_MODEL
from vlrl.config import load_config
from vlrl.stages import align, warmup

DATA = "data.sources=[synth:shapes?n=64&seed=1&levels=1&style=long,synth:arithmetic?n=64&seed=1&levels=1&style=long]"


def warmup_cfg(tmp, *extra):
    return load_config(warmup.WarmupConfig, TINY_MODEL.parent / "warmup.yaml", [
        "init_from=null", "batch_size=8", "log_every=1", "trackers=[]", f"output_dir={tmp}", DATA,
        "eval_sources=[]", "optim.warmup_steps=2", *extra])


def losses(out):
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


@pytest.mark.slow
def test_warmup_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    out = warmup.main(warmup_cfg(tmp_path / "w", "phases=[{steps: 40}]", "optim.lr=3e-3"))
    ls = losses(out)
    assert sum(ls[s] for s in range(36, 41)) / 5 < 0.5 * ls[1]
    assert (out / "config.yaml").exists() and (out / "model.safetensors").exists() and (out / "curves.png").exists()
    from vlrl import Predictor
    assert isinstance(Predictor.load(str(out), device="cpu").answer("What is 1 + 2?", max_new_tokens=4), str)


@pytest.mark.slow
def test_interrupted_run_resumes_exactly(tmp_path):
    """6 steps straight vs 3 steps, stop, resume: identical losses on steps 4-6 (optimizer, scheduler,
    RNG and data position all restored), and the same final weights."""
    common = ["phases=[{steps: 6}]", "save_every=3", "optim.grad_accum=2"]
    a = warmup.main(warmup_cfg(tmp_path / "a", *common))
    warmup.main(warmup_cfg(tmp_path / "b", *common, "max_steps_per_run=3"))
    assert not (tmp_path / "b" / "model.safetensors").exists()  # stopped early: only a checkpoint
    assert (tmp_path / "b" / "checkpoints" / "step-3" / "trainer_state.json").exists()
    b = warmup.main(warmup_cfg(tmp_path / "b", *common))
    la, lb = losses(a), losses(b)
    assert [la[s] for s in (4, 5, 6)] == [lb[s] for s in (4, 5, 6)]
    from safetensors.torch import load_file
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_align_freezing_schedule_only_trains_what_each_phase_names(tmp_path):
    from vlrl.models import load_pretrained
    cfg = load_config(align.AlignConfig, TINY_MODEL.parent / "align.yaml", [
        "batch_size=8", "trackers=[]", f"output_dir={tmp_path / 'p1'}", "save_every=0",
        "data.sources=[synth:shapes?n=32&seed=2,synth:text_rendered?n=8&seed=2]",
        "phases=[{steps: 3, train: [projector]}]"])
    torch.manual_seed(0)
    from vlrl.models import build_vlm
    before, _ = build_vlm(cfg.model)
    out = align.main(cfg)
    after, proc = load_pretrained(out)
    same = lambda m1, m2: all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))  # noqa: E731
    assert same(before.encoder, after.encoder) and same(before.llm, after.llm)
    assert not same(before.projector, after.projector)
    # the next stage loads it by path
    cfg2 = warmup_cfg(tmp_path / "w", "phases=[{steps: 2}]", f"init_from={out}")
    warmup.main(cfg2)
    assert (tmp_path / "w" / "model.safetensors").exists()


@pytest.mark.slow
def test_metrics_reach_tensorboard(tmp_path):
    out = warmup.main(warmup_cfg(tmp_path / "tb", "phases=[{steps: 2}]", "trackers=[tensorboard]"))
    events = list(out.rglob("events.out.tfevents.*"))
    assert events and sum(e.stat().st_size for e in events) > 0


@pytest.mark.slow
def test_length_split_gives_the_whole_batch_gradient(tmp_path, monkeypatch):
    """length_split=4 runs each batch of 8 as 4 length-sorted micro-batches of 2 with their own padding;
    the token-share weights make it the same update as the whole batch: same losses and weights."""
    from safetensors.torch import load_file

    from processors.collate import Batch
    widths, split = [], Batch.split_by_length
    monkeypatch.setattr(Batch, "split_by_length", lambda self, k: [widths.append((self.input_ids.shape[1], p.input_ids.shape[1]))
                                                                    or p for p in split(self, k)])
    common = ["phases=[{steps: 3}]", "optim.lr=1e-2", "save_every=0"]
    a = warmup.main(warmup_cfg(tmp_path / "a", *common, "length_split=1"))
    assert not widths
    b = warmup.main(warmup_cfg(tmp_path / "b", *common, "length_split=4"))
    assert len(widths) == 12 and any(part < whole for whole, part in widths)  # 3 steps x 4 parts, less padding
    la, lb = losses(a), losses(b)
    assert all(abs(la[s] - lb[s]) < 1e-4 for s in (1, 2, 3))
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
    with pytest.raises(ValueError, match="length_split"):
        warmup.main(warmup_cfg(tmp_path / "c", *common, "length_split=0"))
    widths.clear()  # more parts than rows: one row per part
    warmup.main(warmup_cfg(tmp_path / "d", *common, "length_split=9"))
    assert len(widths) == 3 * 8


def test_time_limit_ends_the_run_as_finished(tmp_path):
    """A time limit already passed: one step, then the model is saved as a finished run (not only a
    checkpoint), with the log ending at that step."""
    out = warmup.main(warmup_cfg(tmp_path / "t", "phases=[{steps: 1000}]", "time_limit_minutes=0", "save_every=50"))
    assert (out / "model.safetensors").exists()
    assert sorted(losses(out)) == [1]
    assert (out / "checkpoints" / "step-1" / "trainer_state.json").exists()


def test_warmup_in_bf16_runs_its_forwards_under_autocast(tmp_path, monkeypatch):
    """precision=bf16 for a supervised stage: the LM head computes in bf16 (autocast) during training,
    while the saved weights are fp32."""
    from safetensors.torch import load_file

    from vlrl.models.vlm import VisionLanguageModel

    seen, forward = set(), VisionLanguageModel.forward

    def spy(self, batch, **kw):
        out = forward(self, batch, **kw)
        seen.add(out.logits.dtype)
        return out

    monkeypatch.setattr(VisionLanguageModel, "forward", spy)
    out = warmup.main(warmup_cfg(tmp_path, "phases=[{steps: 2}]", "precision=bf16"))
    assert seen == {torch.bfloat16}
    assert all(t.dtype == torch.float32 for t in load_file(str(out / "model.safetensors")).values())
