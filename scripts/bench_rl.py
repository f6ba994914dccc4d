"""RL step benchmark: rollout + reward + one optimizer step, end to end. Prints JSON.

    python scripts/bench_rl.py                                  # tiny default, k=8, 1 prompt/step, 32 tokens
    python scripts/bench_rl.py --model runs/tiny/warmup --k 8 --prompts 4 --max-tokens 64 --threads 2

Every step does its full update (backward + optimizer step) even when the rewards are all equal.
Reports the median step time, completions/s and generated tokens/s, the rollout / reward / train split,
the share of rollout wall time spent inside model forward passes, and peak RSS.

Partial rollouts (``partial_rollouts`` in the JSON): hooks pin the policy's EOS probability at response
token n to ``a / (n + b)`` (``--lt-a``, ``--lt-b``), so lengths are heavy-tailed (P(length > n) ~
(b / (n + b))^a): most responses short, a few very long, up to ``--lt-max-tokens``. The same iterations (new prompts, k samples, reward, one update)
run without a budget (every response generated to the end inside its iteration) and with
``--lt-budget`` tokens per trajectory per iteration (unfinished ones continue next iteration from the
replay buffer). "Useful" tokens are the response tokens of finished trajectories trained on.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from vlrl.algos import LOSSES
from vlrl.algos.update import UpdateConfig, policy_update
from vlrl.config import load_config
from vlrl.data.synth import generate as synth
from vlrl.models import build_vlm, load_pretrained
from vlrl.rewards import REWARDS
from vlrl.rewards.combine import score_trajectories
from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout
from vlrl.rollout.scoring import sampled_logprobs, scoring_batch
from vlrl.stages import ModelFile
from vlrl.training import build_optimizer
from vlrl.config import OptimConfig  # noqa: E402
from vlrl.models import generation  # noqa: E402
from bench_generate import DECODER_STEPS, Clock  # noqa: E402  (this directory: the script's own)


GEN_TIMER: Clock | None = None  # wall time inside generate (the rollout engine calls it through generate_texts)


def rl_step(model, proc, prompts, cfg: RolloutConfig, reward_fn, step: int, timer: Clock,
            reference: str = "sampler") -> dict:
    t0, f0, g0 = time.perf_counter(), timer.total, GEN_TIMER.total
    trajs = rollout(model, proc, prompts, ReplayBuffer(), step, cfg)
    t1, forward, generate = time.perf_counter(), timer.total - f0, GEN_TIMER.total - g0
    scored = score_trajectories([proc.decode(t.tokens) for t in trajs], [t.sample for t in trajs],
                                [len(t.tokens) for t in trajs], [t.finish for t in trajs], reward_fn)
    batch = scoring_batch(proc, trajs, 0, False)
    t2 = time.perf_counter()
    model.train()
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-5))
    policy_update(model, batch, scored.rewards, scored.group, LOSSES.get("kimi"), {"tau": 0.1}, opt,
                  UpdateConfig(passes=1, minibatch_size=len(trajs), micro_batch_size=len(trajs), reference=reference),
                  sampled=sampled_logprobs(trajs, batch, 0))
    t3 = time.perf_counter()
    return {"rollout": t1 - t0, "reward": t2 - t1, "train": t3 - t2, "total": t3 - t0, "forward": forward,
            "generate": generate,
            "completions": len(trajs), "tokens": sum(len(t.tokens) for t in trajs)}


class LongTailEOS:
    """Hooks that make response lengths heavy-tailed: at absolute position ``pos`` the EOS probability
    is ``a / (pos - p0 + b)`` (a decreasing hazard, so P(length > n) ~ (b / (n + b))^a: most responses
    short, a few very long). It depends on the position only, so a trajectory continued from the replay
    buffer sees the same hazard as one generated in one go."""

    def __init__(self, model, eos_id: int, p0: int, a: float, b: float) -> None:
        self.eos, self.p0, self.a, self.b, self.pos = eos_id, p0, a, b, None
        self.handles = [model.llm.register_forward_pre_hook(self._positions, with_kwargs=True),
                        model.llm.get_output_embeddings().register_forward_hook(self._pin)]

    def _positions(self, _module, _args, kwargs):
        self.pos = kwargs.get("position_ids")

    def _pin(self, _module, _inp, logits):
        pos = self.pos[:, -logits.shape[1]:].to(logits.dtype)  # (B, T') positions of these logits
        p = (self.a / (pos - self.p0 + self.b).clamp(min=1.0)).clamp(1e-4, 0.999)
        others = logits.clone()
        others[..., self.eos] = float("-inf")
        logits[..., self.eos] = torch.log(p / (1 - p)) + torch.logsumexp(others.float(), -1).to(logits.dtype)
        return logits

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def long_tail(model, proc, a, reward_fn) -> dict:
    """Useful trained tokens/s with and without a per-iteration token budget on geometric lengths."""
    prompts = synth("arithmetic", a.lt_prompts * a.lt_iterations, seed=5)
    p0 = min(len(proc.encode(s).input_ids) for s in prompts)
    handle = LongTailEOS(model, proc.eos_token_id, p0, a.lt_a, a.lt_b)
    out = {}
    for name, budget in (("full", 0), ("partial", a.lt_budget)):
        # the hooks read the positions the LLM's own forward is called with: decode through it
        cfg = RolloutConfig(k=a.k, max_response_tokens=a.lt_max_tokens, budget=budget, max_age=100,
                            repeat_max_period=0, decoder="transformers")
        buffer, useful, lengths = ReplayBuffer(cfg.max_age), 0, []
        t0, t_roll = time.perf_counter(), 0.0
        for it in range(a.lt_iterations):
            t1 = time.perf_counter()
            trajs = rollout(model, proc, prompts[it * a.lt_prompts : (it + 1) * a.lt_prompts], buffer, it, cfg)
            t_roll += time.perf_counter() - t1
            if not trajs:
                continue
            scored = score_trajectories([proc.decode(t.tokens) for t in trajs], [t.sample for t in trajs],
                                        [len(t.tokens) for t in trajs], [t.finish for t in trajs], reward_fn)
            batch = scoring_batch(proc, trajs, it, False)
            opt = build_optimizer(list(model.parameters()), OptimConfig(lr=0.0))  # lr 0: same policy both runs
            policy_update(model, batch, scored.rewards, scored.group, LOSSES.get("kimi"), {"tau": 0.1}, opt,
                          UpdateConfig(passes=1, minibatch_size=len(trajs)))
            useful += int(batch.response_mask.sum())
            lengths += [len(t.tokens) for t in trajs]
        wall = time.perf_counter() - t0
        out[name] = {"budget": budget, "useful_tokens": useful, "seconds": round(wall, 2),
                     "rollout_seconds": round(t_roll, 2),
                     "useful_tokens_per_s": round(useful / wall, 1), "finished": len(lengths),
                     "left_in_buffer": len(buffer), "length_mean": round(statistics.mean(lengths), 1),
                     "length_max": max(lengths)}
    handle.remove()
    out["speedup"] = round(out["partial"]["useful_tokens_per_s"] / out["full"]["useful_tokens_per_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="saved model dir (default: build configs/tiny/model.yaml)")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=1, help="prompts per step")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reference", default="sampler", choices=["sampler", "recompute"],
                    help="log pi_theta_i from the sampler (default) or a scoring pass over every response")
    ap.add_argument("--repeat-max-period", type=int, default=RolloutConfig.repeat_max_period,
                    help="repeat detection as in RL (0 disables it; default: the RL default)")
    ap.add_argument("--repeat-times", type=int, default=RolloutConfig.repeat_times)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: every forward under bf16 autocast (fp32 weights and optimizer state)")
    ap.add_argument("--lt-a", type=float, default=1.0, help="long tail: EOS hazard a / (n + b) at response token n")
    ap.add_argument("--lt-b", type=float, default=8.0)
    ap.add_argument("--lt-max-tokens", type=int, default=384, help="long tail: response cap")
    ap.add_argument("--lt-budget", type=int, default=32, help="long tail: tokens per trajectory per iteration")
    ap.add_argument("--lt-prompts", type=int, default=4, help="long tail: new prompts per iteration")
    ap.add_argument("--lt-iterations", type=int, default=24, help="long tail: iterations (the buffer needs a few to fill)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, proc = load_pretrained(a.model) if a.model else build_vlm(load_config(ModelFile, "configs/tiny/model.yaml").model)
    model.precision = a.precision
    # every forward of the model: the vision modules' and the LLM decoder's prefill and steps
    timer = Clock(model.encoder, model.projector, methods=DECODER_STEPS)
    global GEN_TIMER
    GEN_TIMER = Clock(methods=((generation, "generate"),))  # the rest of a rollout: encoding, collating
    cfg = RolloutConfig(k=a.k, max_response_tokens=a.max_tokens, repeat_max_period=a.repeat_max_period,
                        repeat_times=a.repeat_times)
    reward_fn = REWARDS.build("math", symbolic=False)
    prompts = synth("shapes", a.prompts * (a.steps + 1), seed=3)
    rl_step(model, proc, prompts[: a.prompts], cfg, reward_fn, 0, timer, a.reference)  # warm-up
    steps = [rl_step(model, proc, prompts[s * a.prompts : (s + 1) * a.prompts], cfg, reward_fn, s, timer,
                     a.reference) for s in range(1, a.steps + 1)]
    med = statistics.median(r["total"] for r in steps)
    roll = sum(r["rollout"] for r in steps)
    print(json.dumps({
        "benchmark": "rl_step", "parameters": model.num_parameters(), "k": a.k, "prompts_per_step": a.prompts,
        "max_response_tokens": a.max_tokens, "threads": a.threads, "reference": a.reference,
        "precision": a.precision,
        "repeat_max_period": a.repeat_max_period,
        "median_step_seconds": round(med, 4),
        "completions_per_s": round(sum(r["completions"] for r in steps) / sum(r["total"] for r in steps), 2),
        "generated_tokens_per_s": round(sum(r["tokens"] for r in steps) / sum(r["total"] for r in steps), 1),
        "rollout_tokens_per_s": round(sum(r["tokens"] for r in steps) / roll, 1),
        "rollout_completions_per_s": round(sum(r["completions"] for r in steps) / roll, 2),
        "forward_share_of_rollout": round(sum(r["forward"] for r in steps) / roll, 3),
        # the step's time outside generation, the loss forward/backward and the optimizer step (target <= 0.15)
        "overhead_share_of_step": round(sum(r["total"] - r["generate"] - r["train"] for r in steps)
                                        / sum(r["total"] for r in steps), 3),
        "time_split": {k: round(statistics.median(r[k] for r in steps), 4) for k in ("rollout", "reward", "train")},
        "partial_rollouts": long_tail(model, proc, a, reward_fn),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
