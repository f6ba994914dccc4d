"""What one RL iteration's update does to a model, next to SFT steps at the same learning rate.

    python scripts/probe_rl_update.py --model runs/tiny/warmup [--lr 1e-4 3e-4] [--seeds 0 1 2] [--arms ...]
    python scripts/probe_rl_update.py --plot out1.json out2.json --out docs/rl_update_kl.png

For each seed: one rollout batch (``--prompts`` RL prompts x ``--k`` samples at T 1, scored by the
verifier) and ``--steps`` teacher-trace batches. Each arm starts from a copy of the model with a fresh
AdamW and takes its optimizer steps; then the probe measures, on validation prompts that are neither
the RL prompts nor the held-out set (``--val``, greedy):

- ``val/<modality>``: pass@1 after the update (``start`` is the model before);
- ``kl``: mean per-token log pi_old - log pi_new on the rollout batch's sampled tokens (how far the
  policy moved where it was sampled);
- ``sat/<module>``: mean |delta w| / (steps x lr): 1 when every weight moved the full Adam step in the
  same direction at every step (sign-like, coherent steps), about 1/sqrt(steps) for a random walk;
- ``rel/<module>``: RMS(delta w) / RMS(w);
- ``coherence``: |sum of the step vectors| / sum of |step vectors| (1: all steps point one way).

Arms (``--arms``): ``rl`` (the RL update as ``vlrl rl`` runs it: ``policy_update`` with the chosen loss,
``--passes`` passes over ``--minibatch``-response minibatches), ``rl_1pass`` (one pass), ``sft`` (one step
on each of ``steps`` distinct teacher batches), ``sft_same`` (``steps`` steps on one teacher batch) and
``rl_kl`` (``rl`` with the ``--target-kl`` trust region: it stops once the policy moved that far),
``rl_warm`` (``rl`` with the LR warmed up linearly over its steps) and ``rl_warm_kl`` (both).
Prints one JSON object: per lr and arm, the mean and spread over seeds of every metric.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.collate import collate_sft  # noqa: E402
from vlrl.algos import LOSSES  # noqa: E402
from vlrl.algos.update import UpdateConfig, batch_logprobs, policy_update  # noqa: E402
from vlrl.config import OptimConfig  # noqa: E402
from vlrl.eval import evaluate_samples  # noqa: E402
from vlrl.models import SamplingParams, load_pretrained  # noqa: E402
from vlrl.rewards import REWARDS  # noqa: E402
from vlrl.rewards.combine import score_trajectories  # noqa: E402
from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout  # noqa: E402
from vlrl.rollout.scoring import scoring_batch  # noqa: E402
from vlrl.data import load_data  # noqa: E402
from vlrl.models.trainable import MODULES  # noqa: E402
from vlrl.training import OptimizerSchedule, build_optimizer  # noqa: E402

RL_SOURCES = ["synth:shapes?n=1500&seed=2", "synth:arithmetic?n=1500&seed=2"]
SFT_SOURCES = ["synth:shapes?n=600&seed=1&style=long&slip=0.2", "synth:arithmetic?n=400&seed=1&style=long&slip=0.2"]
VAL_SOURCES = ["synth:shapes?n=64&seed=77", "synth:arithmetic?n=64&seed=77"]
LOSS_KWARGS = {"grpo": {"clip_eps": 0.2, "kl_coef": 0.0}, "kimi": {"tau": 0.1, "length_normalize": True},
               "rloo": {}}


def val_accuracy(model, processor, samples, reward_fn) -> dict[str, float]:
    model.eval()
    recs = evaluate_samples(model, processor, samples, SamplingParams(max_new_tokens=200), reward_fn,
                            batch_size=64, progress=False)
    out = {}
    for mod in sorted({r.modality for r in recs}):
        rows = [r.correct[0] for r in recs if r.modality == mod]
        out[f"val/{mod}"] = sum(rows) / len(rows)
    return out


def flat(model) -> dict[str, torch.Tensor]:
    return {m: torch.cat([p.detach().flatten().clone() for p in getattr(model, m).parameters()]) for m in MODULES}


def track_steps(opt, model, steps: list) -> None:
    """Record the whole parameter vector after every optimizer step (for coherence)."""
    opt.register_step_post_hook(lambda *_: steps.append(torch.cat([p.detach().flatten().clone()
                                                                   for p in model.parameters()])))


def run_arm(arm: str, base, processor, data: dict, lr: float, args) -> tuple:
    model = copy.deepcopy(base)
    model.train()
    ocfg = OptimConfig(lr=lr, betas=[0.9, 0.95], schedule="constant",
                       warmup_steps=args.steps if "warm" in arm else 0)
    opt = build_optimizer(list(model.parameters()), ocfg)
    sched = OptimizerSchedule(opt, ocfg, total=args.steps)
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    after: list = []
    track_steps(opt, model, after)
    if arm.startswith("rl"):
        cfg = UpdateConfig(passes=1 if arm == "rl_1pass" else args.passes, minibatch_size=args.minibatch,
                           target_kl=args.target_kl if arm.endswith("_kl") else 0.0)
        policy_update(model, data["batch"], data["rewards"], data["group"], LOSSES.get(args.loss),
                      LOSS_KWARGS[args.loss], opt, cfg, scheduler=sched)
    else:
        batches = data["sft"] if arm == "sft" else [data["sft"][0]] * args.steps
        for b in batches:
            opt.zero_grad(set_to_none=True)
            model(b).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    return model, start, after


def measure(model, base_flat, start, after, data, lr: float) -> dict:
    out: dict = {"optimizer_steps": len(after)}
    for m, w in flat(model).items():
        d = w - base_flat[m]
        out[f"sat/{m}"] = float(d.abs().mean() / (max(1, len(after)) * lr))
        out[f"rel/{m}"] = float(d.pow(2).mean().sqrt() / base_flat[m].pow(2).mean().sqrt())
    prev, lengths = start, 0.0
    for vec in after:
        lengths += float((vec - prev).norm())
        prev = vec
    out["coherence"] = float((after[-1] - start).norm()) / max(1e-12, lengths) if after else 0.0
    model.eval()
    mask = data["batch"].response_mask[:, 1:]
    out["kl"] = float((data["old"] - batch_logprobs(model, data["batch"], 16))[mask].mean())
    return out


def prepare(base, processor, rl_samples, sft_samples, reward_fn, seed: int, args) -> dict:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(rl_samples), generator=gen)[: args.prompts].tolist()
    base.eval()
    cfg = RolloutConfig(k=args.k, temperature=1.0, max_response_tokens=200)
    trajs = rollout(base, processor, [rl_samples[i] for i in idx], ReplayBuffer(2), 0, cfg, seed)
    scored = score_trajectories([processor.decode(t.tokens) for t in trajs], [t.sample for t in trajs],
                                [len(t.tokens) for t in trajs], [t.finish for t in trajs], reward_fn)
    batch = scoring_batch(processor, trajs, 0, True)
    old = batch_logprobs(base, batch, 16)
    sidx = torch.randperm(len(sft_samples), generator=gen).tolist()
    sft = [collate_sft([processor.encode(sft_samples[j], sft_samples[j].response)
                        for j in sidx[b * args.sft_batch : (b + 1) * args.sft_batch]], processor.pad_token_id)
           for b in range(args.steps)]
    return {"batch": batch, "rewards": scored.rewards, "group": scored.group, "old": old, "sft": sft,
            "train_accuracy": float(scored.correct.float().mean())}


def summarize(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    return {k: {"mean": round(statistics.mean(r[k] for r in rows), 4),
                "spread": round(statistics.pstdev(r[k] for r in rows), 4)} for k in keys}


def plot(paths: list[str], out: str) -> None:
    """Validation pass@1 against the KL each update moved the policy, one point per seed and arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors: dict[str, str] = {}
    for path in paths:
        res = json.loads(Path(path).read_text())
        for key, rows in res["per_seed"].items():
            lr, arm = key.split("/")
            for ax, mod in zip(axes, ("image", "text")):
                ax.scatter([r["kl"] for r in rows], [r[f"val/{mod}"] for r in rows], s=18, alpha=0.8, label=arm,
                           color=colors.setdefault(arm, f"C{len(colors)}"), marker="o" if arm.startswith("rl") else "^")
    for ax, mod in zip(axes, ("image", "text")):
        ax.axhline(res["start"][f"val/{mod}"], color="gray", ls="--", lw=1, label="before the update")
        ax.set_xscale("log")
        ax.set_xlabel("KL(pi_old || pi_new) per token on the rollout batch")
        ax.set_title(f"{mod} (lr 1e-4 .. 3e-3, 3 seeds each)")
    axes[0].set_ylabel("validation pass@1 (greedy) after one update")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.legend(uniq.values(), uniq.keys(), loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.82, 1))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/tiny/warmup")
    ap.add_argument("--lr", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["rl", "rl_1pass", "sft", "sft_same"])
    ap.add_argument("--loss", default="grpo", choices=sorted(LOSS_KWARGS))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--target-kl", type=float, default=0.01, help="the rl_kl arm's trust region (UpdateConfig)")
    ap.add_argument("--minibatch", type=int, default=64)
    ap.add_argument("--sft-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plot", nargs="+", metavar="JSON", help="draw earlier outputs of this script into --out")
    ap.add_argument("--out", default="docs/rl_update_kl.png")
    args = ap.parse_args()
    if args.plot:
        return plot(args.plot, args.out)
    torch.set_num_threads(args.threads)
    args.steps = args.passes * -(-args.prompts * args.k // args.minibatch)  # the RL arm's optimizer steps
    base, processor = load_pretrained(args.model)
    reward_fn = REWARDS.build("math", symbolic=False)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON
        rl_samples, sft_samples, val = load_data(RL_SOURCES), load_data(SFT_SOURCES), load_data(VAL_SOURCES)
    base_flat = flat(base)
    result: dict = {"model": args.model, "loss": args.loss, "optimizer_steps_per_arm": args.steps,
                    "start": val_accuracy(base, processor, val, reward_fn), "arms": {}}
    per: dict = {}
    for seed in args.seeds:
        data = prepare(base, processor, rl_samples, sft_samples, reward_fn, seed, args)
        for lr in args.lr:
            for arm in args.arms:
                model, start, after = run_arm(arm, base, processor, data, lr, args)
                row = {**measure(model, base_flat, start, after, data, lr),
                       **val_accuracy(model, processor, val, reward_fn)}
                per.setdefault(f"{lr:g}/{arm}", []).append(row)
                print(f"[probe] seed {seed} lr {lr:g} {arm}: " + ", ".join(
                    f"{k} {v:.3g}" for k, v in row.items() if k.startswith(("val", "kl", "coh", "sat/llm"))),
                    file=sys.stderr, flush=True)
    result["arms"] = {k: summarize(v) for k, v in per.items()}
    result["per_seed"] = per
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
