"""Memory of a supervised (warm-up) step with and without LoRA and gradient checkpointing.

    python scripts/bench_memory.py [--hidden 512 --layers 6 --batch 8 --steps 3]

Each arm runs in its own process (so peak RSS is its own): the embedded default's model with a larger LLM
(about 21M parameters at the defaults), ``--steps`` AdamW steps on long-CoT traces of both modalities.
Prints one JSON object: per arm, total and trainable parameters, peak RSS and seconds per step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"full": [], "lora": ["model.lora={r: 8, alpha: 16}"], "checkpointing": ["model.gradient_checkpointing=true"],
        "lora+checkpointing": ["model.lora={r: 8, alpha: 16}", "model.gradient_checkpointing=true"]}


def run_arm(overrides: list[str], batch: int, steps: int, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from processors import collate_sft
    from vlrl.config import OptimConfig, load_config
    from vlrl.data.synth import generate
    from vlrl.models import build_vlm
    from vlrl.models.trainable import MODULES, set_trainable
    from vlrl.stages import ModelFile
    from vlrl.training import build_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, proc = build_vlm(load_config(ModelFile, ROOT / "configs/tiny/model.yaml", overrides).model)
    set_trainable(model, MODULES)
    samples = generate("shapes", batch // 2, seed=1, style="long") + generate("arithmetic", batch // 2, seed=1, style="long")
    data = collate_sft([proc.encode(s, s.response) for s in samples], proc.pad_token_id)
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-4))
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        model(data).loss.backward()
        opt.step()
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "seconds_per_step": round((time.perf_counter() - t0) / steps, 3),
            "tokens_per_batch": int(data.attention_mask.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    a = ap.parse_args()
    size = [f"model.llm.config.hidden_size={a.hidden}", f"model.llm.config.intermediate_size={3 * a.hidden}",
            f"model.llm.config.num_hidden_layers={a.layers}", "model.llm.config.num_attention_heads=8",
            "model.llm.config.num_key_value_heads=8"]
    if a.arm:
        print(json.dumps(run_arm(size + ARMS[a.arm], a.batch, a.steps, a.threads)))
        return
    out = {"hidden": a.hidden, "layers": a.layers, "batch": a.batch, "steps": a.steps, "arms": {}}
    for arm in ARMS:
        cmd = [sys.executable, __file__, "--arm", arm, *sys.argv[1:]]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out["arms"][arm] = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
