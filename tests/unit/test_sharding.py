"""The single-process parts of vlrl.sharding: which strategy a launch gets, the rollout copy, and the
optimizer state by parameter name (the multi-process parts: tests/integration/test_distributed.py)."""

import pytest
import torch

import vlrl.distributed
from vlrl.sharding import Policy, _empty_copy, full_optimizer_state, launcher_strategy, load_optimizer_state


def test_launcher_strategy_follows_accelerate_and_refuses_deepspeed(monkeypatch):
    for var in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(var, raising=False)
    assert launcher_strategy("auto", "rl") == "none"
    assert launcher_strategy("fsdp", "rl") == "none"  # one process: nothing to shard over
    monkeypatch.setattr(vlrl.distributed, "world", lambda: (0, 2))
    assert launcher_strategy("auto", "rl") == "none" and launcher_strategy("fsdp", "rl") == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert launcher_strategy("auto", "rl") == "fsdp" and launcher_strategy("none", "rl") == "none"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="dpo does not run under DeepSpeed .* configs/accelerate/fsdp.yaml"):
        launcher_strategy("auto", "dpo")
    with pytest.raises(ValueError, match="sharding must be one of auto, none, fsdp, got 'zero3'"):
        launcher_strategy("zero3", "rl")


def test_rl_under_deepspeed_stops_before_loading_anything(monkeypatch, tmp_path):
    from vlrl.config import load_config
    from vlrl.stages import rl

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    cfg = load_config(rl.RLConfig, None, [f"init_from={tmp_path / 'missing'}", f"output_dir={tmp_path / 'out'}"])
    with pytest.raises(ValueError, match="rl does not run under DeepSpeed"):
        rl.main(cfg)


def test_the_rollout_copy_shares_structure_not_weights():
    """No second copy of the weights: empty parameters, tied ones still tied, requires_grad kept."""
    m = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5))
    m[1].weight = m[0].weight
    m[1].bias.requires_grad_(False)
    c = _empty_copy(m)
    assert [p.numel() for p in c.parameters()] == [0, 0] and c[1].weight is c[0].weight
    assert not c[1].bias.requires_grad and m[0].weight.shape == (5, 3)
    assert Policy(m).full() is m and not Policy(m).sharded  # unsharded: the trained module is the copy


def test_optimizer_state_by_name_round_trips_onto_a_plain_module():
    """Saved by parameter name (what a sharded run writes), loaded onto an unsharded module by name,
    with a frozen parameter in between; an older checkpoint's positional state still loads."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    m[0].bias.requires_grad_(False)
    train = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(train, lr=1e-2)
    m(torch.randn(2, 3)).sum().backward()
    opt.step()
    named = full_optimizer_state(m, opt)
    assert list(named["state"]) == ["0.weight", "1.weight", "1.bias"]
    for saved in (named, opt.state_dict()):
        again = torch.optim.AdamW(train, lr=1.0)
        load_optimizer_state(m, again, saved)
        a, b = opt.state_dict(), again.state_dict()
        assert a["param_groups"] == b["param_groups"]
        assert all(torch.equal(a["state"][i][k], b["state"][i][k]) for i in a["state"] for k in a["state"][i])
