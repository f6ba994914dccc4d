"""The real-scale example configs, built with every size shrunk (same code paths, nothing downloaded):
the LLM path points at a tiny local checkpoint, the encoder architecture at a tiny one of the same
family; then each stage config of the example runs one step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, tiny_model_config
from vlrl.config import load_config
from vlrl.models import build_vlm, load_pretrained

EXAMPLES = sorted(p for p in (ROOT / "configs" / "examples").iterdir() if (p / "model.yaml").is_file())
TINY_ARCH = {
    "hf_vision": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                  "num_hidden_layers": 3, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
    "open_clip": {"layers": 3, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
}
SYNTH = "[synth:shapes?n=8&seed=1&levels=1&style=short,synth:arithmetic?n=8&seed=1&levels=1&style=short]"


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    """A tiny causal LM + tokenizer saved like a hub download."""
    torch.manual_seed(0)
    model, proc = build_vlm(tiny_model_config())
    d = tmp_path_factory.mktemp("llm")
    model.llm.save_pretrained(d)
    proc.tokenizer.save_pretrained(d)
    return d


def shrunk(schema, path: Path, llm: Path, *overrides: str):
    """Load a stage config of an example with the model shrunk (only sizes and sources change)."""
    cfg = load_config(schema, path, [f"model.llm.path={llm}", "model.llm.dtype=float32", "model.encoder.pretrained=null",
                                     "model.max_length=256", *overrides])
    cfg.model.encoder.arch = TINY_ARCH[cfg.model.encoder.name]
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_builds_shrunk_and_every_stage_runs_one_step(example, tiny_llm, tmp_path):
    from vlrl.stages import ModelFile, align, curate, long2short, rl, warmup

    cfg = shrunk(ModelFile, example / "model.yaml", tiny_llm)
    model, _ = build_vlm(cfg.model)
    assert model.encoder.num_tokens > 0
    one = ["phases=[{steps: 1}]", "batch_size=2", "save_every=0", "trackers=[]", "optim.grad_accum=1"]
    w = tmp_path / "warmup"
    if (example / "warmup.yaml").is_file():
        warmup.main(shrunk(warmup.WarmupConfig, example / "warmup.yaml", tiny_llm, f"data.sources={SYNTH}",
                           f"output_dir={w}", "eval_sources=[]", *one))
    else:
        _warmup_from_model(example, tiny_llm, w, one)
    load_pretrained(w)
    if (example / "align.yaml").is_file():
        align.main(shrunk(align.AlignConfig, example / "align.yaml", tiny_llm,
                          "data.sources=[synth:shapes?n=8&seed=1]", f"output_dir={tmp_path / 'align'}",
                          "phases=[{steps: 1, train: [projector]}]", "batch_size=2", "save_every=0", "trackers=[]",
                          "optim.grad_accum=1"))
    small_rl = [f"init_from={w}", "sources=[synth:arithmetic?n=8&seed=2&levels=1]", "eval_sources=[]", "iterations=2",
                "prompts_per_iteration=2", "rollout.k=2", "rollout.max_response_tokens=8", "rollout.budget=4",
                "rollout.batch_size=4", "minibatch_size=4", "micro_batch_size=2", "save_every=0"]
    if (example / "rl.yaml").is_file():
        rl.main(load_config(rl.RLConfig, example / "rl.yaml", [*small_rl, f"output_dir={tmp_path / 'rl'}"]))
        load_pretrained(tmp_path / "rl")
    if (example / "curate.yaml").is_file():
        curate.main(load_config(curate.CurateConfig, example / "curate.yaml", [
            f"model={w}", "sources=[synth:curation_pool?n=20&seed=5]", "hack.probe.n=2", "hack.probe.max_new_tokens=4",
            "difficulty.probe.n=2", "difficulty.probe.max_new_tokens=4", "difficulty.drop_trivial=false",
            "selection.target=0", f"output_dir={tmp_path / 'curate'}"]))
    if (example / "long2short.yaml").is_file():
        long2short.main(load_config(long2short.Long2ShortConfig, example / "long2short.yaml", [
            f"long_model={w}", f"short_model={w}", "methods=[merge]", "eval_sources=[synth:shapes?n=2&seed=999&levels=1]",
            "eval_max_new_tokens=4", f"output_dir={tmp_path / 'l2s'}"]))
        load_pretrained(tmp_path / "l2s" / "merge")


def _warmup_from_model(example: Path, llm: Path, out: Path, one: list[str]) -> Path:
    """Examples with only a model.yaml: the tiny warm-up config with the example's model swapped in."""
    from vlrl.stages import ModelFile, warmup

    cfg = load_config(warmup.WarmupConfig, ROOT / "configs" / "tiny" / "warmup.yaml",
                      ["init_from=null", f"data.sources={SYNTH}", f"output_dir={out}", "eval_sources=[]", *one])
    cfg.model = shrunk(ModelFile, example / "model.yaml", llm).model
    warmup.main(cfg)
    return out


@pytest.mark.slow
def test_llava_example_runs_shrunk_from_a_tiny_llava_checkpoint(tmp_path):
    """configs/examples/llava-interleave-qwen-0.5b (LoRA, gradient checkpointing) from a tiny random LLaVA
    of the same layout (SigLIP + Qwen2) standing in for the hub checkpoint: warm-up, RL and long2short RL
    run a step each, and every final model is also written as a transformers LLaVA."""
    import sys

    from vlrl.stages import long2short, rl, warmup

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from test_llava import _llava_dir

    example = ROOT / "configs" / "examples" / "llava-interleave-qwen-0.5b"
    path, _ = _llava_dir(tmp_path, "siglip")
    w = tmp_path / "warmup"
    warmup.main(load_config(warmup.WarmupConfig, example / "warmup.yaml", [
        f"init_from={path}", f"data.sources={SYNTH}", f"output_dir={w}", "eval_sources=[]", "phases=[{steps: 1}]",
        "batch_size=2", "save_every=0", "trackers=[]", "optim.grad_accum=1"]))
    model, _ = load_pretrained(w)
    assert model.config.lora is None and (w / "hf" / "config.json").is_file()  # merged, and exported
    assert model.config.gradient_checkpointing and model.llm.is_gradient_checkpointing
    small = ["sources=[synth:arithmetic?n=8&seed=2&levels=1]", "eval_sources=[]", "iterations=2",
             "prompts_per_iteration=2", "rollout.k=2", "rollout.max_response_tokens=8", "rollout.budget=4",
             "rollout.batch_size=4", "minibatch_size=4", "micro_batch_size=2", "save_every=0"]
    rl.main(load_config(rl.RLConfig, example / "rl.yaml", [f"init_from={w}", *small, f"output_dir={tmp_path / 'rl'}"]))
    assert (tmp_path / "rl" / "hf" / "config.json").is_file()
    long2short.main(load_config(long2short.Long2ShortConfig, example / "long2short.yaml", [
        f"long_model={tmp_path / 'rl'}", "methods=[rl]", "sources=[synth:arithmetic?n=4&seed=4&levels=1]",
        "eval_sources=[synth:shapes?n=2&seed=999&levels=1]", "eval_max_new_tokens=4", "sample.n=2",
        "sample.max_new_tokens=4", "rl.start=long", "rl.overrides=[" + ",".join(repr(x) for x in small) + "]",
        f"output_dir={tmp_path / 'l2s'}"]))
    load_pretrained(tmp_path / "l2s" / "rl")
