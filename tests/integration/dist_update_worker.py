"""Worker for test_distributed.py: a fixed global batch of trajectories, policy updates on this
process's shard, final weights written by rank 0. Run with 1 process or under `accelerate launch`.

    python dist_update_worker.py OUT [--sharding none|fsdp] [--split modulo|uneven|empty] [--losses kimi ...]

``--split`` deals the 6 prompts over the processes: ``modulo`` (prompt p to process p % n), ``uneven``
(the last prompt to the last process, the rest to the first) or ``empty`` (every prompt to the first
process, none to the others). With 1 process every split is the whole batch.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import tiny_model_config  # noqa: E402

from vlrl.algos import LOSSES  # noqa: E402
from vlrl.algos.update import UpdateConfig, batch_logprobs, policy_update  # noqa: E402
from vlrl.config import OptimConfig  # noqa: E402
from vlrl.data.synth import generate  # noqa: E402
from vlrl.distributed import init_from_launcher, shutdown, world  # noqa: E402
from vlrl.models import build_vlm  # noqa: E402
from vlrl.rollout.buffer import Trajectory  # noqa: E402
from vlrl.rollout.scoring import scoring_batch  # noqa: E402
from vlrl.sharding import Policy, full_state_dict  # noqa: E402
from vlrl.training import build_optimizer  # noqa: E402

HYPER = {"kimi": {"tau": 0.1}, "grpo": {}, "rloo": {}, "dpo": {"beta": 0.1}}
K = 2  # responses per prompt: the right answer (reward 1) and a wrong one (reward 0), also a DPO pair


def trajectories(proc):
    samples = generate("shapes", 3, seed=4) + generate("arithmetic", 3, seed=4)  # 6 prompts, mixed modalities
    trajs, rewards = [], []
    for p, s in enumerate(samples):
        for j in range(K):
            text = f"Answer: {s.answer}" if j == 0 else f"Answer: {int(s.answer) + 1 + p}"
            trajs.append(Trajectory(s, finish="stop"))
            trajs[-1].add_segment(proc.tokenize(text) + [proc.eos_token_id], 0)
            rewards.append(1.0 if j == 0 else 0.0)
    return trajs, rewards


def owner(prompt: int, n: int, split: str) -> int:
    if split == "modulo":
        return prompt % n
    if split == "uneven":
        return n - 1 if prompt == 5 else 0
    return 0  # empty: the other processes hold nothing


def run(model, proc, trajs, rewards, mine, loss: str, sharding: str) -> dict:
    """One update of ``loss`` on this process's rows; returns the whole weights and the last step's stats."""
    batch = scoring_batch(proc, [trajs[i] for i in mine], 0, True)
    sampled = None
    if loss == "kimi" and mine:  # the sampler's log-probs, missing on prompt 0's rows: those are rescored
        sampled = batch_logprobs(model, batch, 4)
        sampled[~batch.response_mask[:, 1:]] = float("nan")
        sampled[[j for j, i in enumerate(mine) if i // K == 0]] = float("nan")
    policy = Policy(model, sharding)
    opt = build_optimizer(list(policy.train.parameters()), OptimConfig(lr=1e-2, weight_decay=0.0))
    for g in opt.param_groups:  # Adam's default eps (1e-8) turns float-order noise in a near-zero gradient
        g["eps"] = 1e-6         # into a step of up to the lr: which CPU runs the sum must not decide the test
    stats = policy_update(policy.train, batch if mine else None, torch.tensor([rewards[i] for i in mine]),
                          torch.tensor([i // K for i in mine], dtype=torch.long), LOSSES.get(loss), HYPER[loss], opt,
                          UpdateConfig(passes=3, minibatch_size=12, micro_batch_size=2, grad_clip=1.0), sampled)
    params = full_state_dict(policy.train) if policy.sharded else policy.train.state_dict()
    return {"params": {k: v.detach().clone() for k, v in params.items()}, "loss": stats["loss"],
            "entropy": stats["entropy"], "steps": stats["optimizer_steps"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--sharding", default="none", choices=["none", "fsdp"])
    ap.add_argument("--split", default="modulo", choices=["modulo", "uneven", "empty"])
    ap.add_argument("--losses", nargs="+", default=["kimi"])
    args = ap.parse_args()
    init_from_launcher()
    rank, n = world()
    torch.manual_seed(0)
    model, proc = build_vlm(tiny_model_config())
    init = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    trajs, rewards = trajectories(proc)
    mine = [i for i in range(len(trajs)) if owner(i // K, n, args.split) == rank]
    results = {loss: run(copy.deepcopy(model), proc, trajs, rewards, mine, loss, args.sharding) for loss in args.losses}
    if rank == 0:
        torch.save({"world": n, "init": init, "results": results}, args.out)
    shutdown()  # gloo can abort at interpreter exit with the group still up


if __name__ == "__main__":
    main()
