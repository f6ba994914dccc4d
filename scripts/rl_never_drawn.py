"""Accuracy of an RL run's model on the training prompts it never drew, through the evaluation harness and
through the rollout engine (mixed batches, as in training); prints JSON.

    python scripts/rl_never_drawn.py runs/tiny/rl [--per-modality 160] [--samples 8] [--model runs/tiny/warmup]

The prompts the run drew are read from its last checkpoint (the success tracker's `drawn` mask, saved with
every checkpoint), so the prompts scored are from the training source but were never trained on: a check of
the online `accuracy_fresh` against the same model measured offline. `--model` scores another model (e.g.
the run's starting model) on the same prompts. The run needs `save_every` > 0 (its final iteration is then
always saved).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from vlrl.checkpoint import latest_checkpoint, load_checkpoint_state
from vlrl.config import load_config
from vlrl.eval.runner import evaluate_samples
from vlrl.models import load_pretrained
from vlrl.models.generation import SamplingParams
from vlrl.rewards import REWARDS
from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout
from vlrl.stages.rl import RLConfig
from vlrl.data import load_data


def never_drawn(run: Path, cfg: RLConfig, samples: list) -> list:
    """The samples (in the run's source order) that the run's last checkpoint records as never drawn."""
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise SystemExit(f"rl_never_drawn: {run} has no checkpoint; run RL with save_every > 0")
    state, tensors = load_checkpoint_state(ckpt)
    if "drawn" not in tensors:
        raise SystemExit(f"rl_never_drawn: {ckpt} predates the drawn-prompt mask; re-run RL")
    if int(state["step"]) != cfg.iterations:
        raise SystemExit(f"rl_never_drawn: the last checkpoint {ckpt} is iteration {state['step']} of "
                         f"{cfg.iterations}; prompts drawn after it would count as never drawn")
    drawn = tensors["drawn"].tolist()
    if len(drawn) != len(samples):
        raise SystemExit(f"rl_never_drawn: {ckpt} tracks {len(drawn)} prompts, the run's sources give {len(samples)}")
    return [s for s, d in zip(samples, drawn) if not d]


def rollout_accuracy(model, proc, prompts: list, rcfg: RolloutConfig, reward) -> dict[str, float]:
    """Accuracy per modality of rcfg.k rollouts per prompt (one rollout call, batched as in training)."""
    hits: dict[str, list[bool]] = {}
    for t in rollout(model, proc, prompts, ReplayBuffer(1), 0, rcfg, seed=0):
        hits.setdefault(t.sample.modality, []).append(reward(proc.decode(t.tokens), t.sample).reward >= 1.0)
    return {m: round(sum(v) / len(v), 4) for m, v in hits.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="an RL output directory (config.yaml, checkpoints/ and the final model)")
    ap.add_argument("--per-modality", type=int, default=160, help="never-drawn prompts per modality")
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt at the rollout temperature")
    ap.add_argument("--max-new-tokens", type=int, default=None,
                    help="response cap (default: the run's eval_max_new_tokens for the harness, "
                         "rollout.max_response_tokens for the rollouts)")
    ap.add_argument("--model", default=None, help="score this model instead of the run's (e.g. its starting model)")
    a = ap.parse_args(argv)
    cfg = load_config(RLConfig, str(a.run / "config.yaml"), [])
    by_mod: dict[str, list] = {}
    for s in never_drawn(a.run, cfg, load_data(cfg.sources)):
        by_mod.setdefault(s.modality, []).append(s)
    picked = {m: v[: a.per_modality] for m, v in by_mod.items()}
    model, proc = load_pretrained(a.model or str(a.run))
    reward = REWARDS.build("math", symbolic=False)
    params = SamplingParams(max_new_tokens=a.max_new_tokens or cfg.eval_max_new_tokens,
                            temperature=cfg.rollout.temperature, num_samples=a.samples)
    out: dict = {"run": str(a.run), "model": a.model or str(a.run), "prompts": {m: len(v) for m, v in picked.items()},
                 "harness": {}}
    for m, ps in picked.items():
        recs = evaluate_samples(model, proc, ps, params, reward, progress=False)
        out["harness"][m] = round(sum(sum(r.correct) for r in recs) / sum(len(r.correct) for r in recs), 4)
    mixed = [p for group in zip(*picked.values()) for p in group]  # interleaved modalities, as drawn in training
    rcfg = replace(cfg.rollout, k=a.samples, budget=0,
                   max_response_tokens=a.max_new_tokens or cfg.rollout.max_response_tokens)
    out["rollout"] = rollout_accuracy(model, proc, mixed, rcfg, reward)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
