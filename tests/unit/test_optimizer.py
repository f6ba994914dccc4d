"""The optimizer every stage builds: fused AdamW where it can be, and the same steps as the looped one."""

import torch

from vlrl.config import OptimConfig
from vlrl.training import build_optimizer, fusable


def _params(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(6, 4, generator=g)), torch.nn.Parameter(torch.randn(4, generator=g))]


def test_cpu_parameters_get_the_fused_kernel_and_its_steps_equal_the_looped_ones():
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    fused, looped = _params(0), _params(0)
    opt = build_optimizer(fused, cfg)
    assert all(group["fused"] for group in opt.param_groups)
    ref = torch.optim.AdamW([{"params": looped[:1], "weight_decay": 0.1}, {"params": looped[1:], "weight_decay": 0.0}],
                            lr=1e-2, betas=tuple(cfg.betas), foreach=False)
    for step in range(3):
        for p, q, g in zip(fused, looped, _params(10 + step)):
            p.grad, q.grad = g.detach().clone(), g.detach().clone()
        opt.step(), ref.step()
    for p, q in zip(fused, looped):
        assert torch.allclose(p, q, atol=1e-6)
    assert not torch.equal(fused[0], _params(0)[0])  # the steps did move the weights


def test_integer_or_mixed_device_parameters_keep_the_default_implementation():
    assert fusable([torch.zeros(2), torch.zeros(3)])
    assert not fusable([torch.zeros(2), torch.zeros(2, dtype=torch.long)])
    assert not fusable([torch.zeros(2), torch.zeros(2, device="meta")])
