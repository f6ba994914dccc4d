"""LoRA (peft): only adapters train, the base weights stay, merged weights reproduce the adapter model,
checkpoints keep the adapters, and RL's log-ratio is exactly 0 on an iteration's first step."""

from __future__ import annotations

import copy

import pytest
import torch

from processors import collate_sft
from vlrl.config import LoRAConfig, OptimConfig
from vlrl.data.synth import generate as synth
from vlrl.models import load_pretrained, save_pretrained
from vlrl.models.lora import add_lora, has_lora
from vlrl.models.trainable import MODULES, set_trainable
from vlrl.training import build_optimizer


def _batch(proc):
    s = synth("shapes", 2, seed=5, style="long") + synth("arithmetic", 2, seed=5, style="long")
    return collate_sft([proc.encode(x, x.response) for x in s], proc.pad_token_id)


def test_lora_trains_only_adapters_and_merges_on_save(tiny, tmp_path):
    base, proc = tiny
    model = copy.deepcopy(base)
    add_lora(model, LoRAConfig(r=4, alpha=8, modules=["llm"]))
    set_trainable(model, MODULES)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or not n.startswith("llm.") for n in trainable)
    assert any(n.startswith("projector.") for n in trainable)  # modules without adapters train fully
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("llm.") and ".lora_" not in n}
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-2))
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)  # the optimizer holds only them
    batch = _batch(proc)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(batch).loss.backward()
        opt.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)  # no base weight of the LLM moved
    model.eval()
    with torch.no_grad():
        adapted = model(batch).logits
    save_pretrained(model, proc, tmp_path / "merged")  # full weights, no adapters
    merged, _ = load_pretrained(tmp_path / "merged")
    assert not has_lora(merged) and merged.config.lora is None
    with torch.no_grad():
        assert float((merged.eval()(batch).logits - adapted).abs().max()) < 1e-4
        assert not torch.allclose(base.eval()(batch).logits, adapted)  # the adapters did change the model
    save_pretrained(model, proc, tmp_path / "ckpt", merge_lora=False)  # a training checkpoint
    again, _ = load_pretrained(tmp_path / "ckpt")
    assert has_lora(again) and set(again.state_dict()) == set(model.state_dict())


def test_rl_log_ratio_is_zero_on_the_first_step_under_lora(tiny):
    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.rollout.buffer import Trajectory
    from vlrl.rollout.scoring import scoring_batch

    base, proc = tiny
    model = copy.deepcopy(base)
    add_lora(model, LoRAConfig(r=4, alpha=8))
    set_trainable(model, MODULES)
    trajs, group = [], []
    for p, s in enumerate(synth("shapes", 2, seed=7) + synth("arithmetic", 2, seed=7)):
        for text in (f"Answer: {s.answer}", "Answer: 0"):
            trajs.append(Trajectory(s, finish="stop"))
            trajs[-1].add_segment(proc.tokenize(text) + [proc.eos_token_id], 0)
            group.append(p)
    batch = scoring_batch(proc, trajs, 0, True)
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-2))
    model.train()
    stats = policy_update(model, batch, torch.tensor([1.0, 0.0] * 4), torch.tensor(group), LOSSES.get("kimi"),
                          {"tau": 0.1}, opt, UpdateConfig(passes=1, minibatch_size=len(trajs)))
    assert stats["optimizer_steps"] == 1 and stats["log_ratio_abs_max"] == 0.0


def test_bad_lora_settings_are_named(tiny):
    model = copy.deepcopy(tiny[0])
    with pytest.raises(ValueError, match="lora.modules"):
        add_lora(model, LoRAConfig(modules=["vision"]))
    with pytest.raises(ValueError, match="lora.target_modules"):
        add_lora(model, LoRAConfig(target_modules=["no_such_layer"]))
