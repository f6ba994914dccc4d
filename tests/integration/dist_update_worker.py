"""Worker for test_distributed.py: a fixed global batch of trajectories, policy updates on this
process's shard, final weights written by rank 0. Run with 1 process or under `accelerate launch`."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import tiny_model_config  # noqa: E402

from vlrl.algos import LOSSES  # noqa: E402
from vlrl.algos.update import UpdateConfig, policy_update  # noqa: E402
from vlrl.data.synth import generate  # noqa: E402
from vlrl.distributed import init_from_launcher, shutdown, world  # noqa: E402
from vlrl.models import build_vlm  # noqa: E402
from vlrl.rollout.buffer import Trajectory  # noqa: E402
from vlrl.rollout.scoring import scoring_batch  # noqa: E402
from vlrl.config import OptimConfig  # noqa: E402
from vlrl.training import build_optimizer  # noqa: E402


def main(out: str) -> None:
    init_from_launcher()
    rank, n = world()
    torch.manual_seed(0)
    model, proc = build_vlm(tiny_model_config())
    init = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    samples = generate("shapes", 3, seed=4) + generate("arithmetic", 3, seed=4)  # 6 prompts, mixed modalities
    k = 2
    trajs, rewards = [], []
    for p, s in enumerate(samples):  # k responses per prompt: the right answer and a wrong one
        for j in range(k):
            text = f"Answer: {s.answer}" if j == 0 else f"Answer: {int(s.answer) + 1 + p}"
            trajs.append(Trajectory(s, finish="stop"))
            trajs[-1].add_segment(proc.tokenize(text) + [proc.eos_token_id], 0)
            rewards.append(1.0 if j == 0 else 0.0)
    mine = [i for i in range(len(trajs)) if (i // k) % n == rank]  # shard by prompt, as the RL stage does
    batch = scoring_batch(proc, [trajs[i] for i in mine], 0, True)
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-2, weight_decay=0.0))
    stats = policy_update(model, batch, torch.tensor([rewards[i] for i in mine]), torch.tensor([i // k for i in mine]),
                          LOSSES.get("kimi"), {"tau": 0.1}, opt,
                          UpdateConfig(passes=3, minibatch_size=12, micro_batch_size=2, grad_clip=1.0))
    if rank == 0:
        torch.save({"world": n, "init": init, "params": {k_: v.detach().clone() for k_, v in model.state_dict().items()},
                    "loss": stats["loss"], "entropy": stats["entropy"]}, out)
    shutdown()  # gloo can abort at interpreter exit with the group still up


if __name__ == "__main__":
    main(sys.argv[1])
