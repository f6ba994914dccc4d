"""One AdamW step on the tiny model's parameters: torch's looped, foreach and fused kernels. Prints JSON.

    python scripts/bench_optimizer.py                     # the 1.1M default
    python scripts/bench_optimizer.py --set model.llm.config.hidden_size=384 model.llm.config.intermediate_size=1024 \\
        model.llm.config.num_attention_heads=6 model.llm.config.num_key_value_heads=6      # the 7.6M size

``vlrl.training.build_optimizer`` picks the fused kernel where ``fusable`` allows it; this shows what that
buys. Gradients are random and fixed; each kernel takes 3 warm-up steps, then ``--steps`` timed ones,
the kernels alternating step by step (median milliseconds per step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from vlrl.config import load_config
from vlrl.models import build_vlm
from vlrl.stages import ModelFile

KERNELS = {"looped": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/tiny/model.yaml")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of --config")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, _ = build_vlm(load_config(ModelFile, a.config, a.set).model)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opts = {name: torch.optim.AdamW(params, lr=1e-5, **kw) for name, kw in KERNELS.items()}
    times: dict[str, list[float]] = {name: [] for name in opts}
    for step in range(3 + a.steps):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            opt.step()
            if step >= 3:
                times[name].append(time.perf_counter() - t0)
    ms = {name: round(1000 * statistics.median(t), 2) for name, t in times.items()}
    print(json.dumps({"benchmark": "adamw_step", "parameters": sum(p.numel() for p in params),
                      "tensors": len(params), "threads": a.threads, "step_ms": ms,
                      "fused_speedup_over_looped": round(ms["looped"] / ms["fused"], 2)}, indent=2))


if __name__ == "__main__":
    main()
