"""Generation throughput of a model on a batch of image questions. Prints JSON.

    python scripts/bench_generate.py                       # the tiny default, 32 image prompts, 64 new tokens
    python scripts/bench_generate.py --model runs/demo/model --batch 32 --samples 8 --threads 2

    python scripts/bench_generate.py --model DIR --batch 1 --samples 8 --max-new-tokens 32 --profile
    python scripts/bench_generate.py --batch 4 --samples 8 --max-new-tokens 200 --kv-cache compare
    python scripts/bench_generate.py --batch 1 --samples 8 --max-new-tokens 32 --decoder compare

Every row generates exactly --max-new-tokens tokens (EOS ignored) so runs are comparable. ``time_split``
says where generation time goes: the LLM's prefill and decode steps (whichever decoder runs them), the
vision tower and projector, and the rest (sampling, cache row selection, bookkeeping in vlrl's loop). ``--profile`` adds
the operators with the most self CPU time in one more run (torch.profiler); ``--compile`` decodes through
torch.compile (its one-time cost is in ``compile_seconds``); ``--kv-cache dynamic`` decodes with
transformers' ``DynamicCache`` instead of vlrl's in-place one (both with ``--decoder transformers``),
``--kv-cache compare`` times both in one process, alternating (``kv_cache_compare``); ``--decoder``
picks the LLM's decode loop (``vlrl.models.decoding``) and ``--decoder compare`` times vlrl's Llama
decoder against the model's own forward (with the in-place cache) the same way (``decoder_compare``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import time

import torch

from processors import collate_generation
from vlrl.config import load_config
from vlrl.data.synth import generate as synth
from vlrl.models import SamplingParams, build_vlm, generate, load_pretrained
from vlrl.models import decoding
from vlrl.stages import ModelFile


DECODER_STEPS = tuple((cls, m) for cls in (decoding.LlamaDecoder, decoding.TransformersDecoder) for m in ("prefill", "step"))


class Clock:
    """Wall time inside some (non-nested) modules' forwards (pre/post forward hooks) and inside functions
    (``methods``: (class or module, name) pairs, wrapped in place: the decoders' ``prefill`` / ``step``). A compiled decode calls
    the LLM's forward, not the module, so module hooks do not fire there: that time counts as rest."""

    def __init__(self, *modules: torch.nn.Module, methods: tuple = ()) -> None:
        self.total, self._t = 0.0, 0.0
        for m in modules:
            m.register_forward_pre_hook(lambda *_: setattr(self, "_t", time.perf_counter()))
            m.register_forward_hook(lambda *_: setattr(self, "total", self.total + time.perf_counter() - self._t))
        for cls, name in methods:
            setattr(cls, name, self._timed(getattr(cls, name)))

    def _timed(self, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t
        return run


def top_ops(model, batch, params: SamplingParams, eos: int, n: int = 10) -> list[dict]:
    """The ``n`` operators with the most self CPU time in one generation (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        generate(model, batch, params, eos, torch.Generator().manual_seed(0))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:n]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [{"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1000, 2),
             "share": round(e.self_cpu_time_total / total, 3)} for e in events]


def load_model(a: argparse.Namespace):
    """(model in eval mode, processor): --model, else built from --config with --set (seed 0); with
    --kv-cache dynamic, generation gives the model no cache, so it builds transformers' DynamicCache."""
    torch.manual_seed(0)
    if a.kv_cache == "dynamic":
        decoding.decode_cache = lambda llm, reserve: None
    model, proc = load_pretrained(a.model) if a.model else build_vlm(load_config(ModelFile, a.config, a.set).model)
    return model.eval(), proc


def alternate(model, batch, eos: int, repeats: int, arms: dict) -> dict:
    """Median seconds of one generation per arm (name -> (SamplingParams, the KV cache factory to use)),
    the arms alternating in this process so that machine load drifts hit them alike."""
    own = decoding.decode_cache
    times: dict[str, list[float]] = {name: [] for name in arms}
    try:
        for r in range(repeats):
            for name, (params, cache) in arms.items():
                decoding.decode_cache = cache
                t0 = time.perf_counter()
                generate(model, batch, params, eos, torch.Generator().manual_seed(r))
                times[name].append(time.perf_counter() - t0)
    finally:
        decoding.decode_cache = own
    return {f"{k}_s": round(statistics.median(v), 4) for k, v in times.items()}


def compare_caches(model, batch, params: SamplingParams, eos: int, repeats: int) -> dict:
    """The in-place cache against transformers' DynamicCache, both through the model's own forward."""
    p = dataclasses.replace(params, decoder="transformers")
    med = alternate(model, batch, eos, repeats, {"inplace": (p, decoding.decode_cache),
                                                  "dynamic": (p, lambda llm, reserve: None)})
    return {**med, "speedup": round(med["dynamic_s"] / med["inplace_s"], 3)}


def compare_decoders(model, batch, params: SamplingParams, eos: int, repeats: int) -> dict:
    """vlrl's Llama decoder against the model's own forward (with the in-place cache)."""
    arms = {d: (dataclasses.replace(params, decoder=d), decoding.decode_cache) for d in ("llama", "transformers")}
    med = alternate(model, batch, eos, repeats, arms)
    return {**med, "speedup": round(med["transformers_s"] / med["llama_s"], 3)}


def timed(model, batch, params: SamplingParams, eos: int, repeats: int, clocks: dict) -> tuple:
    """One warm-up generation (and compilation), then ``repeats`` timed ones: (warm-up seconds, median
    seconds, tokens per generation, the share of time each clock saw plus the rest)."""
    t0 = time.perf_counter()
    generate(model, batch, params, eos)
    first = time.perf_counter() - t0
    for c in clocks.values():
        c.total = 0.0
    times, tokens = [], 0
    for r in range(repeats):
        t0 = time.perf_counter()
        tokens = generate(model, batch, params, eos, torch.Generator().manual_seed(r)).num_tokens
        times.append(time.perf_counter() - t0)
    split = {k: round(c.total / sum(times), 3) for k, c in clocks.items()}
    split["rest"] = round(1 - sum(split.values()), 3)
    return first, statistics.median(times), tokens, split


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
    ap.add_argument("--profile", action="store_true", help="add the top operators by self CPU time (one more run)")
    ap.add_argument("--compile", action="store_true", help="decode through torch.compile (SamplingParams.compile)")
    ap.add_argument("--kv-cache", choices=["inplace", "dynamic", "compare"], default="inplace",
                    help="vlrl's in-place cache (the default), transformers' DynamicCache (concatenates every "
                         "step), or compare: both in this process, alternating, their medians and the speed-up")
    ap.add_argument("--decoder", choices=[*decoding.DECODERS, "compare"], default="auto",
                    help="the LLM's decode loop (SamplingParams.decoder), or compare: vlrl's Llama decoder "
                         "against the model's own forward, alternating, their medians and the speed-up")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="overrides of --config, e.g. model.llm.config.hidden_size=384 (without --model)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, proc = load_model(a)
    batch = collate_generation([proc.encode(s) for s in synth("shapes", a.batch, seed=7)], proc.pad_token_id)
    params = SamplingParams(max_new_tokens=a.max_new_tokens, temperature=a.temperature, num_samples=a.samples,
                            stop_token_ids=[-1], compile=a.compile,  # never stops early: fixed work per run
                            decoder="auto" if a.decoder == "compare" else a.decoder)
    # hooks first: a compiled forward is traced with them (added later, they would force a recompile)
    clocks = {"llm": Clock(methods=DECODER_STEPS), "vision": Clock(model.encoder, model.projector)}
    compile_seconds, med, tokens, split = timed(model, batch, params, proc.eos_token_id, a.repeats, clocks)
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
        "decode_step_ms": round(1000 * med / a.max_new_tokens, 2),
        "time_split": split,
        "kv_cache": a.kv_cache,
        "kv_cache_compare": compare_caches(model, batch, params, proc.eos_token_id, a.repeats)
        if a.kv_cache == "compare" else None,
        "decoder": a.decoder,
        "decoder_compare": compare_decoders(model, batch, params, proc.eos_token_id, a.repeats)
        if a.decoder == "compare" else None,
        "compile": a.compile, "compile_seconds": round(compile_seconds, 1) if a.compile else None,
        "top_ops": top_ops(model, batch, params, proc.eos_token_id) if a.profile else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
