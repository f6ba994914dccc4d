"""Generation throughput of a model on a batch of image questions. Prints JSON.

    python scripts/bench_generate.py                       # the tiny default, 32 image prompts, 64 new tokens
    python scripts/bench_generate.py --model runs/demo/model --batch 32 --samples 8 --threads 2

Every row generates exactly --max-new-tokens tokens (EOS ignored) so runs are comparable.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from processors import collate_generation
from vlrl.config import load_config
from vlrl.data.synth import generate as synth
from vlrl.models import SamplingParams, build_vlm, generate, load_pretrained
from vlrl.stages import ModelFile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="saved model dir (default: build configs/tiny/model.yaml)")
    ap.add_argument("--config", default="configs/tiny/model.yaml")
    ap.add_argument("--batch", type=int, default=32, help="image prompts per batch")
    ap.add_argument("--samples", type=int, default=1, help="samples per prompt (k)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model:
        model, proc = load_pretrained(a.model)
    else:
        model, proc = build_vlm(load_config(ModelFile, a.config).model)
    model.eval()
    batch = collate_generation([proc.encode(s) for s in synth("shapes", a.batch, seed=7)], proc.pad_token_id)
    params = SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature, num_samples=a.samples,
                            stop_token_ids=[-1])  # never stops early: fixed work per run
    generate(model, batch, SamplingParams(max_new_tokens=4), proc.eos_token_id)  # warm-up
    times, tokens = [], 0
    for r in range(a.repeats):
        t0 = time.perf_counter()
        out = generate(model, batch, params, proc.eos_token_id, torch.Generator().manual_seed(r))
        times.append(time.perf_counter() - t0)
        tokens = out.num_tokens
    med = statistics.median(times)
    print(json.dumps({
        "benchmark": "generate",
        "parameters": model.num_parameters(),
        "batch_prompts": a.batch,
        "samples_per_prompt": a.samples,
        "prompt_tokens": int(batch.attention_mask.sum(1).float().mean()),
        "new_tokens_per_row": a.max_new_tokens,
        "threads": a.threads,
        "median_seconds": round(med, 4),
        "generated_tokens_per_s": round(tokens / med, 1),
        "completions_per_s": round(a.batch * a.samples / med, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
