"""RL step benchmark: rollout + reward + one optimizer step, end to end. Prints JSON.

    python scripts/bench_rl.py                                  # tiny default, k=8, 1 prompt/step, 32 tokens
    python scripts/bench_rl.py --model runs/tiny/warmup --k 8 --prompts 4 --max-tokens 64 --threads 2

Every step does its full update (backward + optimizer step) even when the rewards are all equal.
Reports the median step time, completions/s and generated tokens/s, the rollout / reward / train split,
the share of rollout wall time spent inside model forward passes, and peak RSS.
Not yet measured here: the partial-rollout comparison on a long-tailed length distribution (issue 4).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from vlrl.algos import LOSSES
from vlrl.config import load_config
from vlrl.data.synth import generate as synth
from vlrl.models import build_vlm, load_pretrained
from vlrl.rewards import REWARDS
from vlrl.rewards.combine import score_trajectories
from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout
from vlrl.rollout.scoring import scoring_batch
from vlrl.stages import ModelFile
from vlrl.training import build_optimizer
from vlrl.config import OptimConfig  # noqa: E402


class ForwardTimer:
    """Accumulates wall time spent inside a module's forward (pre/post hooks)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.total, self._t = 0.0, 0.0
        module.register_forward_pre_hook(lambda *a: setattr(self, "_t", time.perf_counter()))
        module.register_forward_hook(lambda *a: setattr(self, "total", self.total + time.perf_counter() - self._t))


def rl_step(model, proc, prompts, cfg: RolloutConfig, reward_fn, gen, timer: ForwardTimer) -> dict:
    t0, f0 = time.perf_counter(), timer.total
    trajs = rollout(model, proc, prompts, ReplayBuffer(), 0, cfg, gen)
    t1, forward = time.perf_counter(), timer.total - f0
    scored = score_trajectories([proc.decode(t.tokens) for t in trajs], [t.sample for t in trajs],
                                [len(t.tokens) for t in trajs], [t.finish for t in trajs], reward_fn)
    batch = scoring_batch(proc, trajs, 0, False)
    t2 = time.perf_counter()
    model.train()
    with torch.no_grad():
        ref, _ = model.response_logprobs(batch)
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-5))
    logp, _ = model.response_logprobs(batch)
    out = LOSSES.get("kimi")(logp, ref, batch.response_mask[:, 1:], scored.rewards, scored.group, tau=0.1)
    out.loss.backward()
    opt.step()
    t3 = time.perf_counter()
    return {"rollout": t1 - t0, "reward": t2 - t1, "train": t3 - t2, "total": t3 - t0, "forward": forward,
            "completions": len(trajs), "tokens": sum(len(t.tokens) for t in trajs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="saved model dir (default: build configs/tiny/model.yaml)")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=1, help="prompts per step")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, proc = load_pretrained(a.model) if a.model else build_vlm(load_config(ModelFile, "configs/tiny/model.yaml").model)
    timer = ForwardTimer(model.llm)
    cfg = RolloutConfig(k=a.k, max_response_tokens=a.max_tokens, repeat_max_period=0)
    reward_fn = REWARDS.build("math", symbolic=False)
    prompts = synth("shapes", a.prompts * (a.steps + 1), seed=3)
    gen = torch.Generator().manual_seed(0)
    rl_step(model, proc, prompts[: a.prompts], cfg, reward_fn, gen, timer)  # warm-up
    steps = [rl_step(model, proc, prompts[s * a.prompts : (s + 1) * a.prompts], cfg, reward_fn, gen, timer)
             for s in range(1, a.steps + 1)]
    med = statistics.median(r["total"] for r in steps)
    roll = sum(r["rollout"] for r in steps)
    print(json.dumps({
        "benchmark": "rl_step", "parameters": model.num_parameters(), "k": a.k, "prompts_per_step": a.prompts,
        "max_response_tokens": a.max_tokens, "threads": a.threads,
        "median_step_seconds": round(med, 4),
        "completions_per_s": round(sum(r["completions"] for r in steps) / sum(r["total"] for r in steps), 2),
        "generated_tokens_per_s": round(sum(r["tokens"] for r in steps) / sum(r["total"] for r in steps), 1),
        "rollout_tokens_per_s": round(sum(r["tokens"] for r in steps) / roll, 1),
        "rollout_completions_per_s": round(sum(r["completions"] for r in steps) / roll, 2),
        "forward_share_of_rollout": round(sum(r["forward"] for r in steps) / roll, 3),
        "time_split": {k: round(statistics.median(r[k] for r in steps), 4) for k in ("rollout", "reward", "train")},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
