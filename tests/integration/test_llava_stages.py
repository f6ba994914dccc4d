"""Stages start from an imported LLaVA checkpoint, and what they train exports back to transformers."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vlrl.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_llava import _llava_dir, _samples, _same_logits  # noqa: E402


import pytest


@pytest.mark.parametrize("lora", [False, True])
def test_warmup_and_rl_from_an_imported_llava_export_to_transformers(tmp_path, lora):
    """With LoRA too: the warm-up (model.lora) and RL (lora) train adapters, and every saved model holds
    merged full weights that transformers loads."""
    from transformers import LlavaForConditionalGeneration

    from processors import collate_scoring
    from vlrl.models import load_pretrained
    from vlrl.models.llava import export_llava
    from vlrl.stages import rl, warmup

    path, _ = _llava_dir(tmp_path, "clip")
    data = "data.sources=[synth:shapes?n=16&seed=1&style=direct,synth:arithmetic?n=16&seed=1&style=direct]"
    w = warmup.main(load_config(warmup.WarmupConfig, "configs/tiny/warmup.yaml", [
        f"init_from={path}", data, "phases=[{steps: 2}]", "batch_size=4", "eval_sources=[]", "trackers=[]",
        "length_split=1", "export_llava=true", f"output_dir={tmp_path / 'warm'}", *(["model.lora={r: 4, alpha: 8}"] if lora else [])]))
    r = rl.main(load_config(rl.RLConfig, "configs/tiny/rl.yaml", [
        f"init_from={w}", f"output_dir={tmp_path / 'rl'}", "iterations=2", "prompts_per_iteration=2", "rollout.k=2",
        "rollout.max_response_tokens=6", "minibatch_size=4", "export_llava=true", "eval_sources=[]", "eval_at_start=false",
        "sources=[synth:shapes?n=10&seed=2&levels=1,synth:arithmetic?n=10&seed=2&levels=1]",
        *(["lora={r: 4, alpha: 8}", "train=[llm]", "save_adapter=true", "optim.lr=1e-2"] if lora else [])]))
    model, proc = load_pretrained(r)
    assert (w / "hf" / "config.json").is_file()  # export_llava: the stages write the layout themselves
    hf = LlavaForConditionalGeneration.from_pretrained(str(r / "hf")).eval()
    assert export_llava(model, proc, tmp_path / "hf").is_dir()
    batch = collate_scoring([proc.encode(s, "Answer: 9") for s in _samples()], proc.pad_token_id)
    assert _same_logits(model.eval(), hf, batch) < 1e-5
    start, _ = load_pretrained(path)
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), model.state_dict().values()))
    if lora:  # the RL adapter alone, applied with peft to the LLaVA export of the model RL started from
        from peft import PeftModel

        adapted = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(str(w / "hf")),
                                            str(r / "adapter")).eval()
        assert _same_logits(model, adapted, batch) < 1e-4
