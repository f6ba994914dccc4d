"""Rollouts from an FSDP2-sharded policy, two ways, under 2 processes. Prints one JSON object.

    python scripts/bench_sharded_rollout.py                 # the tiny default and the ~51M model
    python scripts/bench_sharded_rollout.py --sizes tiny --tokens 64

- ``gather_once`` (vlrl's default, ``vlrl.sharding.Policy.full``): all-gather the whole weights into a
  plain module once after the update, then generate on it with no collective at all;
- ``per_layer``: generate through the sharded model itself, FSDP all-gathering each decoder layer's
  weights at every decode step (the root unit's are gathered once for the whole call).

Per-layer gathering moves the whole model over the wire once per generated token, and needs every
process to run the same number of forwards: here each process generates exactly ``--tokens`` tokens for
``--prompts`` prompts x ``--k`` samples (EOS never stops a row), which RL rollouts of uneven lengths and
prompt counts could only match with idle forwards. Times are medians of ``--runs`` after one warm-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sizes() -> dict:
    spec = importlib.util.spec_from_file_location("bench_sharding", ROOT / "scripts" / "bench_sharding.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SIZES


def worker(size: str, a: argparse.Namespace, out: Path) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    from processors import collate_generation
    from vlrl.config import load_config
    from vlrl.data.synth import generate as synth
    from vlrl.distributed import barrier, init_from_launcher, world
    from vlrl.models import SamplingParams, build_vlm, generate
    from vlrl.sharding import Policy
    from vlrl.stages import ModelFile

    init_from_launcher()
    rank, _ = world()
    torch.manual_seed(0)
    model, proc = build_vlm(load_config(ModelFile, ROOT / "configs/tiny/model.yaml", sizes()[size]).model)
    policy = Policy(model, "fsdp")
    prompts = synth("arithmetic", a.prompts, seed=10 + rank)
    batch = collate_generation([proc.encode(s) for s in prompts], proc.pad_token_id)
    params = SamplingParams(max_new_tokens=a.tokens, temperature=1.0, num_samples=a.k, stop_token_ids=[-1])

    def gather_once():
        policy.updated()  # as after an update: the copy is stale
        return generate(policy.full(), batch, params, proc.eos_token_id, row_keys=list(range(a.prompts * a.k)))

    def per_layer():
        policy.train.unshard()  # the root unit (vision, embeddings, final norm, head): gathered for the whole call
        out = generate(policy.train, batch, params, proc.eos_token_id, row_keys=list(range(a.prompts * a.k)))
        policy.train.reshard()
        return out

    result, tokens = {}, {}
    for name, fn in (("gather_once", gather_once), ("per_layer", per_layer)):
        times = []
        for _ in range(a.runs + 1):
            barrier()
            t = time.perf_counter()
            tokens[name] = fn().tokens
            barrier()
            times.append(time.perf_counter() - t)
        result[f"{name}_s"] = round(statistics.median(times[1:]), 4)
    result["same_tokens"] = tokens["gather_once"] == tokens["per_layer"]
    (out / f"rank{rank}.json").write_text(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["tiny", "50m"])
    ap.add_argument("--prompts", type=int, default=4, help="prompts per process")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per row")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=29580)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.sizes[0], a, Path(a.worker))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = {"processes": 2, "prompts_per_process": a.prompts, "k": a.k, "tokens": a.tokens, "sizes": {}}
    for i, size in enumerate(a.sizes):
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(a.port + i), __file__, "--worker", d, "--sizes", size,
                   "--prompts", str(a.prompts), "--k", str(a.k), "--tokens", str(a.tokens), "--runs", str(a.runs)]
            res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"bench_sharded_rollout: {size} failed:\n{res.stderr[-3000:]}")
            ranks = [json.loads((Path(d) / f"rank{r}.json").read_text()) for r in range(2)]
        row = {k: max(r[k] for r in ranks) for k in ranks[0] if k != "same_tokens"}
        row["same_tokens"] = all(r["same_tokens"] for r in ranks)
        row["per_layer_over_gather_once"] = round(row["per_layer_s"] / row["gather_once_s"], 2)
        out["sizes"][size] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
