"""What an iteration's rollouts say (``iteration_metrics``) and which of them an update can learn from
(``keep_informative``): pure functions of the scored trajectories, used by the RL stage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from vlrl.rewards.combine import ScoredBatch


def keep_informative(trajs: list, scored: ScoredBatch) -> tuple[list, ScoredBatch, tuple[int, int]]:
    """Drop the prompts whose rewards are all equal (zero advantage under a group baseline). ``scored``
    holds (B,) tensors, one row per trajectory of ``trajs``; returns the kept trajectories, their rows of
    ``scored`` and (dropped groups, groups)."""
    g = scored.group
    var = torch.tensor([bool((scored.rewards[g == x] != scored.rewards[g == x][0]).any()) for x in g], dtype=torch.bool)
    n_groups = len(torch.unique(g))
    dropped = n_groups - len(torch.unique(g[var]))
    idx = var.nonzero().squeeze(-1).tolist()
    sub = replace(scored, rewards=scored.rewards[idx], correct=scored.correct[idx], lengths=scored.lengths[idx],
                  group=scored.group[idx])
    return [trajs[i] for i in idx], sub, (dropped, n_groups)


def iteration_metrics(records: list[tuple], groups: tuple, buffer: tuple, times: dict, errors: int) -> dict:
    """Metrics over every process's trajectories. ``records``: (modality, reward, correct, length, fresh)
    per finished trajectory, ``fresh`` when its prompt was drawn for the first time this iteration;
    ``groups``: (zero-variance groups, groups); ``buffer``: (size, expired). ``accuracy_fresh`` is the
    accuracy on prompts never trained on before (plain training accuracy also counts repeated prompts)."""
    mods = np.array([r[0] for r in records])
    rew, cor, lens, fresh = (np.array([r[i] for r in records], dtype=float) for i in (1, 2, 3, 4))
    fresh = fresh.astype(bool)
    m = {"reward": float(rew.mean()), "accuracy": float(cor.mean()),
         "length_mean": float(lens.mean()), "length_p95": float(np.percentile(lens, 95)),
         "zero_variance_groups": groups[0] / max(1, groups[1]), "buffer": int(buffer[0]), "expired": int(buffer[1]),
         "trajectories": len(records), "verifier_errors": errors,
         **{f"time_{k}": round(v, 3) for k, v in times.items()},
         "tokens_per_s": float(lens.sum()) / max(1e-9, sum(times.values()))}
    if fresh.any():
        m["accuracy_fresh"], m["fresh_fraction"] = float(cor[fresh].mean()), float(fresh.mean())
    for mod in sorted(set(mods.tolist())):
        if (fresh & (mods == mod)).any():
            m[f"accuracy_fresh/{mod}"] = float(cor[fresh & (mods == mod)].mean())
        m[f"accuracy/{mod}"] = float(cor[mods == mod].mean())
        m[f"length/{mod}"] = float(lens[mods == mod].mean())
        m[f"reward/{mod}"] = float(rew[mods == mod].mean())
    return m
