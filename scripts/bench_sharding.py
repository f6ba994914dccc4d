"""Per-process memory of the RL update under data parallel (every process holds everything) and FSDP2
(each holds 1/N of every parameter, gradient and Adam moment). Prints one JSON object.

    python scripts/bench_sharding.py                      # the tiny default (~1M) and a ~51M model
    python scripts/bench_sharding.py --sizes 50m

Arms per size: 1 process; 2 processes data parallel (``sharding: none``); 2 processes FSDP2
(``sharding: fsdp``), each a separate launch (``accelerate launch``, gloo on CPU). In each process: the
policy (``vlrl.sharding.Policy``), AdamW over it, one backward of the RL loss on a mixed image / text
batch (gradient bytes measured after it), then a 2-step ``kimi`` update (optimizer state exists after
it). Bytes are this process's own tensors (a DTensor's local shard); ``rollout_copy_bytes`` is the
whole-weight copy FSDP gathers for rollouts and frees during the update (0 without sharding: the
trained module is the copy). ``peak_rss_mb`` includes the Python / torch runtime (~400 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"tiny": [], "50m": ["model.llm.config.hidden_size=640", "model.llm.config.intermediate_size=1792",
                             "model.llm.config.num_hidden_layers=10", "model.llm.config.num_attention_heads=8",
                             "model.llm.config.num_key_value_heads=8"]}
ARMS = {"1 process": (1, "none"), "2 processes, data parallel": (2, "none"), "2 processes, fsdp": (2, "fsdp")}


def local_bytes(tensors) -> int:
    """Bytes of this process's part of each tensor (the local shard of a DTensor)."""
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        t = t.to_local() if isinstance(t, DTensor) else t
        total += t.numel() * t.element_size()
    return total


def trajectories(proc) -> tuple[list, list[float], list[int]]:
    """8 responses to 4 prompts (2 image, 2 text): per prompt a right and a wrong one."""
    from vlrl.data.synth import generate
    from vlrl.rollout.buffer import Trajectory

    trajs, rewards, group = [], [], []
    for p, s in enumerate(generate("shapes", 2, seed=4) + generate("arithmetic", 2, seed=4)):
        for j in range(2):
            t = Trajectory(s, finish="stop")
            t.add_segment(proc.tokenize(f"Answer: {s.answer if j == 0 else 7 + p}") + [proc.eos_token_id], 0)
            trajs.append(t)
            rewards.append(1.0 if j == 0 else 0.0)
            group.append(p)
    return trajs, rewards, group


def worker(size: str, sharding: str, out: Path) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.config import OptimConfig, load_config
    from vlrl.distributed import init_from_launcher, world
    from vlrl.models import build_vlm
    from vlrl.rollout.scoring import scoring_batch
    from vlrl.sharding import Policy
    from vlrl.stages import ModelFile
    from vlrl.training import build_optimizer

    init_from_launcher()
    rank, n = world()
    torch.manual_seed(0)
    model, proc = build_vlm(load_config(ModelFile, ROOT / "configs/tiny/model.yaml", SIZES[size]).model)
    n_params = sum(p.numel() for p in model.parameters())
    trajs, rewards, group = trajectories(proc)
    mine = [i for i in range(len(rewards)) if group[i] % n == rank]
    sub = scoring_batch(proc, [trajs[i] for i in mine], 0, True)
    policy = Policy(model, sharding if n > 1 else "none")
    opt = build_optimizer(list(policy.train.parameters()), OptimConfig(lr=1e-4))
    cfg = UpdateConfig(passes=2, minibatch_size=8, micro_batch_size=4)
    rows = torch.tensor(mine)
    policy.train.train()
    lp, _ = policy.train.response_logprobs(sub, 1.0)
    lp.nan_to_num(0.0).sum().backward()
    grads = local_bytes(p.grad for p in policy.train.parameters() if p.grad is not None)
    opt.zero_grad(set_to_none=True)
    policy_update(policy.train, sub, torch.tensor(rewards)[rows], torch.tensor(group)[rows], LOSSES.get("kimi"),
                  {"tau": 0.1}, opt, cfg)
    moments = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    result = {"parameters": n_params, "parameter_bytes": local_bytes(policy.train.parameters()),
              "gradient_bytes": grads, "optimizer_bytes": local_bytes(moments)}
    policy.updated()
    policy.full()
    result["rollout_copy_bytes"] = local_bytes(policy._copy.parameters()) if policy.sharded else 0
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def launch(size: str, n: int, sharding: str, port: int) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory() as d:
        args = [__file__, "--worker", d, "--sizes", size, "--sharding", sharding]
        cmd = [sys.executable, *args] if n == 1 else [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(port), *args]
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"bench_sharding: {size} / {n} processes / {sharding} failed:\n{res.stderr[-3000:]}")
        return [json.loads((Path(d) / f"rank{r}.json").read_text()) for r in range(n)]


def summary(ranks: list[dict]) -> dict:
    """The busiest process's bytes (the one that has to fit), in MB, and the parameter count."""
    mb = {k.replace("_bytes", "_mb"): round(max(r[k] for r in ranks) / 2**20, 2)
          for k in ranks[0] if k.endswith("_bytes")}
    state = max(r["parameter_bytes"] + r["gradient_bytes"] + r["optimizer_bytes"] for r in ranks)
    return {"processes": len(ranks), "parameters": ranks[0]["parameters"], **mb, "update_state_mb": round(state / 2**20, 2),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--port", type=int, default=29570)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one process of one arm
    ap.add_argument("--sharding", default="none", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.sizes[0], a.sharding, Path(a.worker))
        return
    out: dict = {}
    for size in a.sizes:
        arms = {name: summary(launch(size, n, sharding, a.port + i))
                for i, (name, (n, sharding)) in enumerate(ARMS.items())}
        dp, fs = arms["2 processes, data parallel"], arms["2 processes, fsdp"]
        out[size] = {"arms": arms, "fsdp_over_ddp/parameters": round(fs["parameter_mb"] / dp["parameter_mb"], 3),
                     "fsdp_over_ddp/update_state": round(fs["update_state_mb"] / dp["update_state_mb"], 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
