"""Speed and memory: vlrl's RL step against TRL's ``GRPOTrainer`` on the identical model. Prints JSON.

    pip install -e '.[compare]'                         # TRL (optional extra)
    python scripts/bench_vs_trl.py                      # ~1M and ~8M parameters, 3 alternating runs each
    python scripts/bench_vs_trl.py --sizes 1m --runs 1 --steps 4      # a quick look

Per size, one random-init model is built from ``configs/tiny/model.yaml`` (the 8M one with a wider LLM),
saved, and exported to the transformers LLaVA layout (``vlrl export``): TRL runs the export, vlrl the
original; they compute the same logits (``tests/unit/test_llava.py``). Each run is its own process (so
peak RSS is that implementation's alone, nothing else measured in it), the two alternate so that machine
load drifts hit both, and every run has the same:

- text-only arithmetic prompts, ``--prompts`` per step, ``--k`` samples each at T ``--temperature``
  (top-p 1, no top-k, no repetition rules), exactly ``--max-tokens`` new tokens (EOS is suppressed in both,
  so a random model's lengths cannot differ between them);
- reward: vlrl's math verifier; loss: GRPO with clipped ratio (0.2), no KL term, one optimizer step per
  generation on the whole batch (TRL ``num_iterations=1``, vlrl ``grpo`` with one pass), AdamW;
- fp32 and no gradient checkpointing for both (TRL's CPU defaults, bf16 and checkpointing, are far slower
  on CPU), ``--threads`` threads.

``update_s_at_matmul_rate`` is the update's matmul work at the machine's measured matmul rate
(``matmul_gflops``): the floor under any implementation of the same update, TRL's included;
``decode_s_at_matmul_floor`` is the decode's: the LLM's linear layers on k rows, chained as in a step,
once per new token. ``ratio_bound`` = TRL's step time over the sum of the two floors: the ratio no exact
implementation of the same work exceeds on this machine.

Step times are medians over ``--steps`` steps after one warm-up step (``first_step_s``: with ``--compile``
it holds the one-time compilation); the split is generation + reward (+ TRL's log-prob bookkeeping)
against the update. ``ratio`` = vlrl completions/s over TRL's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"1m": [], "8m": ["model.llm.config.hidden_size=384", "model.llm.config.intermediate_size=1024",
                          "model.llm.config.num_attention_heads=6", "model.llm.config.num_key_value_heads=6"]}


def build(size: str, out: Path) -> None:
    """The random-init model of ``size`` in ``out/vlrl`` and its LLaVA export in ``out/hf``."""
    import torch

    from vlrl.config import load_config
    from vlrl.models import build_vlm, save_pretrained
    from vlrl.models.llava import export_llava
    from vlrl.stages import ModelFile

    torch.manual_seed(0)
    model, processor = build_vlm(load_config(ModelFile, ROOT / "configs/tiny/model.yaml", SIZES[size]).model)
    save_pretrained(model, processor, out / "vlrl")
    export_llava(model, processor, out / "hf")


def prompts(n: int):
    from vlrl.data.synth import generate

    return generate("arithmetic", n, seed=5, levels="1-3")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def summary(steps: list[dict], completions: int, tokens: int) -> dict:
    """Medians of the timed steps (the first, warm-up, dropped) and the rates they give."""
    timed = steps[1:]
    step = statistics.median(s["step"] for s in timed)
    gen = statistics.median(s["generate"] for s in timed)
    return {"first_step_s": round(steps[0]["step"], 2), "step_s": round(step, 4), "completions_per_s": round(completions / step, 2),
            "generated_tokens_per_s": round(tokens / step, 1),
            "split_s": {"generate_and_reward": round(gen, 4), "update": round(step - gen, 4)},
            "peak_rss_mb": peak_rss_mb()}


def run_trl(a: argparse.Namespace, d: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, LlavaForConditionalGeneration, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from vlrl.models import load_pretrained
    from vlrl.rewards import REWARDS

    _, processor = load_pretrained(d / "vlrl")
    samples = prompts(a.prompts * (a.steps + 1))
    by_q = {s.question: s for s in samples}
    tok = AutoTokenizer.from_pretrained(d / "hf")
    rows = [{"prompt": processor.prompt_text(s), "question": s.question} for s in samples]
    verify = REWARDS.build("math", symbolic=False)

    def reward(prompts, completions, question, **_):
        return [float(verify(c, by_q[q]).reward) for c, q in zip(completions, question)]

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(d / "hf", dtype=torch.float32)
    args = GRPOConfig(
        output_dir=str(d / "trl"), seed=0, max_steps=a.steps + 1, learning_rate=1e-5, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, per_device_train_batch_size=a.prompts * a.k,
        num_generations=a.k, steps_per_generation=1, num_iterations=1, beta=0.0, epsilon=0.2, loss_type="grpo",
        max_completion_length=a.max_tokens, temperature=a.temperature, top_p=1.0, top_k=0, repetition_penalty=1.0,
        bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, logging_steps=1, save_strategy="no",
        report_to=[], disable_dropout=True, dataloader_num_workers=0, remove_unused_columns=False, shuffle_dataset=False,
        generation_kwargs={"suppress_tokens": [model.config.image_token_id, processor.eos_token_id]})
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok)
    steps: list[dict] = []
    real = trainer._generate_and_score_completions

    def timed_generation(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            steps[-1]["generate"] += time.perf_counter() - t

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            steps.append({"t0": time.perf_counter(), "generate": 0.0})

        def on_step_end(self, *_, **__):
            steps[-1]["step"] = time.perf_counter() - steps[-1].pop("t0")

    trainer._generate_and_score_completions = timed_generation
    trainer.add_callback(Clock())
    trainer.train()
    return summary(steps, a.prompts * a.k, a.prompts * a.k * a.max_tokens)


def run_vlrl(a: argparse.Namespace, d: Path) -> dict:
    import torch

    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.config import OptimConfig
    from vlrl.models import load_pretrained
    from vlrl.rewards import REWARDS
    from vlrl.rewards.combine import score_trajectories
    from vlrl.rollout import ReplayBuffer, RolloutConfig, rollout
    from vlrl.rollout.scoring import sampled_logprobs, scoring_batch
    from vlrl.training import build_optimizer

    torch.manual_seed(0)
    model, proc = load_pretrained(d / "vlrl")
    eos = torch.tensor([proc.eos_token_id])

    def no_eos(_module, _inputs, logits):  # the same fixed length as TRL's
        return logits.index_fill(-1, eos, float("-inf"))

    # registered once for the run (the update scores under the distribution the sampler drew from):
    # a hook added per step would change what a compiled forward was traced with, and recompile it
    model.llm.get_output_embeddings().register_forward_hook(no_eos)
    samples = prompts(a.prompts * (a.steps + 1))
    cfg = RolloutConfig(k=a.k, temperature=a.temperature, top_p=1.0, max_response_tokens=a.max_tokens,
                        repeat_max_period=0, compile=a.compile)
    verify = REWARDS.build("math", symbolic=False)
    opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-5, betas=[0.9, 0.999], schedule="constant"))
    update = UpdateConfig(passes=1, minibatch_size=a.prompts * a.k, micro_batch_size=a.prompts * a.k,
                          temperature=a.temperature)
    steps = []
    for s in range(a.steps + 1):
        t0 = time.perf_counter()
        model.eval()
        trajs = rollout(model, proc, samples[s * a.prompts : (s + 1) * a.prompts], ReplayBuffer(), s, cfg)
        scored = score_trajectories([proc.decode(t.tokens) for t in trajs], [t.sample for t in trajs],
                                    [len(t.tokens) for t in trajs], [t.finish for t in trajs], verify)
        batch = scoring_batch(proc, trajs, s, False)
        t1 = time.perf_counter()
        model.train()
        policy_update(model, batch, scored.rewards, scored.group, LOSSES.get("grpo"), {"clip_eps": 0.2, "kl_coef": 0.0},
                      opt, update, sampled=sampled_logprobs(trajs, batch, s))
        steps.append({"step": time.perf_counter() - t0, "generate": t1 - t0})
    return summary(steps, a.prompts * a.k, a.prompts * a.k * a.max_tokens)


def child(a: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(a.threads)
    d = Path(a.out) / a.size
    result = (run_trl if a.arm == "trl" else run_vlrl)(a, d)
    print("RESULT " + json.dumps(result), flush=True)


def launch(a: argparse.Namespace, arm: str, size: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, __file__, *sys.argv[1:], "--arm", arm, "--size", size]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{arm} run ({size}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def matmul_gflops(threads: int, rows: int = 344, d: int = 384, f: int = 1024, reps: int = 200) -> float:
    """The machine's fp32 matmul throughput at the 8M model's MLP shape (tokens x hidden @ hidden x ffn)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(rows, d), torch.randn(d, f)
    for _ in range(20):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return round(2 * rows * d * f * reps / (time.perf_counter() - t) / 1e9, 1)


def update_bound(model, proc, a: argparse.Namespace, gflops: float) -> dict:
    """The update's matmul work (6 x LLM parameters x tokens: forward 2, backward 4) and the time it takes
    at the measured matmul rate: a floor no implementation of the same update goes under."""
    tokens = a.prompts * a.k * (len(proc.prompt_ids(prompts(1)[0])) + a.max_tokens)
    flops = 6 * model.num_parameters()["llm"] * tokens
    return {"parameters": model.num_parameters()["total"], "update_tokens": tokens,
            "update_gflop": round(flops / 1e9, 2), "update_s_at_matmul_rate": round(flops / (gflops * 1e9), 4)}


def decode_bound(model, a: argparse.Namespace, threads: int, reps: int = 30) -> dict:
    """A decode step's matmuls alone: every linear layer of the LLM in order (lm_head included) on
    prompts x k rows, timed as one chain (so the weights stream through the caches as in a real step),
    best of ``reps``, times the new tokens. The decode of any implementation computing these logits pays
    at least this: at a few rows per step the weights are read once per token, so it is bound by how fast
    they stream, not by FLOPs."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    linears = [m for m in model.llm.modules() if isinstance(m, torch.nn.Linear)]
    rows = a.prompts * a.k
    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            t = time.perf_counter()
            for m in linears:
                F.linear(inputs[m.in_features], m.weight, m.bias)
            best = min(best, time.perf_counter() - t)
    return {"decode_step_matmul_s": round(best, 6), "decode_s_at_matmul_floor": round(best * a.max_tokens, 4)}


def compare(runs: dict[str, list[dict]]) -> dict:
    """Per implementation the median of its runs' numbers; the ratio of completions/s (vlrl / TRL)."""
    out: dict = {}
    for arm, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in
               ("first_step_s", "step_s", "completions_per_s", "generated_tokens_per_s", "peak_rss_mb")}
        med["split_s"] = {k: round(statistics.median(r["split_s"][k] for r in rs), 4) for k in rs[0]["split_s"]}
        out[arm] = {**med, "completions_per_s_runs": [r["completions_per_s"] for r in rs]}
    out["ratio"] = round(out["vlrl"]["completions_per_s"] / out["trl"]["completions_per_s"], 2)
    out["rss_ratio"] = round(out["vlrl"]["peak_rss_mb"] / out["trl"]["peak_rss_mb"], 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--runs", type=int, default=3, help="runs per implementation and size, alternating")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run (after one warm-up step)")
    p.add_argument("--prompts", type=int, default=1, help="prompts per step")
    p.add_argument("--k", type=int, default=8, help="samples per prompt")
    p.add_argument("--max-tokens", type=int, default=32, help="new tokens per sample (EOS suppressed)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true",
                   help="vlrl decodes through torch.compile (rollout.compile); its one-time cost is in first_step_s")
    p.add_argument("--out", default="runs/bench_vs_trl")
    p.add_argument("--arm", choices=["vlrl", "trl"], help=argparse.SUPPRESS)  # one run, in a child process
    p.add_argument("--size", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.arm:
        return child(a)
    result: dict = {"benchmark": "rl_step_vs_trl", "vlrl_compile": a.compile, "k": a.k, "prompts_per_step": a.prompts,
                    "max_new_tokens": a.max_tokens, "temperature": a.temperature, "threads": a.threads,
                    "steps": a.steps, "runs": a.runs, "matmul_gflops": matmul_gflops(a.threads), "sizes": {}}
    for size in a.sizes:
        d = Path(a.out) / size
        if not (d / "hf" / "config.json").is_file():
            build(size, d)
        runs: dict[str, list[dict]] = {"vlrl": [], "trl": []}
        for i in range(a.runs):
            for arm in ("vlrl", "trl") if i % 2 == 0 else ("trl", "vlrl"):
                runs[arm].append(launch(a, arm, size))
                print(f"[bench] {size} {arm} run {i + 1}: {runs[arm][-1]['completions_per_s']} completions/s",
                      file=sys.stderr, flush=True)
        from vlrl.models import load_pretrained

        model, proc = load_pretrained(d / "vlrl")  # the floors are the model's, measured in this process
        sized = {**update_bound(model, proc, a, result["matmul_gflops"]), **decode_bound(model, a, a.threads),
                 **compare(runs)}
        # the most any exact implementation could gain over TRL here: TRL's step against the step made of
        # nothing but its decode matmuls and the update at the matmul rate (reward and sampling left out)
        floor = sized["decode_s_at_matmul_floor"] + sized["update_s_at_matmul_rate"]
        sized["ratio_bound"] = round(sized["trl"]["step_s"] / floor, 2)
        for arm in runs:  # the share of the matmul rate the update runs at (1 = the floor)
            sized[arm]["update_matmul_efficiency"] = round(sized["update_s_at_matmul_rate"]
                                                           / max(1e-9, sized[arm]["split_s"]["update"]), 2)
        result["sizes"][size] = sized
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
