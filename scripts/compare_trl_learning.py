"""Learning cross-check: vlrl's ``grpo`` against TRL's ``GRPOTrainer`` on the identical model. Prints JSON.

    pip install -e '.[compare]'        # TRL (optional extra)
    python scripts/compare_trl_learning.py --model runs/tiny/warmup --seeds 0 1 2 --steps 20

The vlrl model directory is exported to the transformers LLaVA layout (``vlrl export``); TRL trains the
export, vlrl trains the original, which computes the same logits (tests/unit/test_llava.py). Both run at
matched settings on the same text-only arithmetic prompts (each step draws ``--prompts`` of them):

- G = ``--k`` samples per prompt at T ``--temperature`` (top-p 1, no top-k, no repetition rules), at most
  ``--max-tokens`` new tokens; reward = vlrl's math verifier (1 correct, 0 otherwise);
- advantage (r - group mean) / group std, clipped ratio (epsilon 0.2), beta 0 (no KL term), the loss
  averaged over each response's tokens and then over responses (TRL's ``loss_type="grpo"``, vlrl's
  ``grpo`` loss), one optimizer step on the whole batch per generation (``num_iterations=1``);
- AdamW at ``--lr``, betas (0.9, 0.999), no weight decay, gradient clipping at 1.0, constant schedule,
  no warm-up; fp32, no gradient checkpointing (TRL's defaults, bf16 and gradient checkpointing, are far
  slower on CPU and would not be the same model).

Differences that remain: TRL's group std is the sample std with eps 1e-4, vlrl's the population std with
eps 1e-6 (a uniform factor of about sqrt(7/8) on the advantages, which Adam nearly cancels); the order in
which prompts are drawn differs (each draws its own random permutation). The check is therefore
statistical: per seed the mean training reward of the first and the last ``--window`` steps; the JSON says
whether the two implementations' final-window means (over seeds) differ by less than the sum of their seed
spreads (population std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prompts(n: int, seed: int):
    """``n`` text-only arithmetic problems (levels 1-3: the warm-up solves some, not all)."""
    from vlrl.data.synth import generate

    return generate("arithmetic", n, seed=seed, levels="1-3")


def run_trl(a: argparse.Namespace, seed: int, out: Path) -> list[float]:
    """TRL GRPOTrainer on the exported model; returns the mean reward of each step."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, LlavaForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from vlrl.models import load_pretrained
    from vlrl.rewards import REWARDS

    _, processor = load_pretrained(a.model)
    samples = prompts(a.pool, a.data_seed)
    by_q = {s.question: s for s in samples}
    tok = AutoTokenizer.from_pretrained(a.export)
    rows = []
    for s in samples:
        text = processor.prompt_text(s)  # the prompt vlrl encodes, chat template included
        if tok(text).input_ids != processor.tokenize(text):
            raise SystemExit("the exported tokenizer adds special tokens vlrl does not: prompts would differ")
        rows.append({"prompt": text, "question": s.question})
    verify = REWARDS.build("math", symbolic=False)

    def reward(prompts, completions, question, **_):
        return [float(verify(c, by_q[q]).reward) for c, q in zip(completions, question)]

    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration.from_pretrained(a.export, torch_dtype=torch.float32)
    batch = a.prompts * a.k
    args = GRPOConfig(
        output_dir=str(out), seed=seed, max_steps=a.steps, learning_rate=a.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0,
        per_device_train_batch_size=batch, num_generations=a.k, steps_per_generation=1,
        num_iterations=1, beta=0.0, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        max_completion_length=a.max_tokens, temperature=a.temperature, top_p=1.0, top_k=0, repetition_penalty=1.0,
        bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, logging_steps=1, save_strategy="no",
        report_to=[], disable_dropout=True, dataloader_num_workers=0, remove_unused_columns=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok)
    trainer.train()
    return [h["reward"] for h in trainer.state.log_history if "reward" in h]


def run_vlrl(a: argparse.Namespace, seed: int, out: Path) -> list[float]:
    """vlrl's RL stage with the grpo loss at the same settings; returns the mean reward of each iteration."""
    from vlrl.data.synth import write_dataset

    data = out / "prompts"
    if not (data / "data.jsonl").is_file():
        write_dataset(prompts(a.pool, a.data_seed), data)
    overrides = [
        f"init_from={a.model}", f"sources=[{data / 'data.jsonl'}]", "eval_sources=[]", f"iterations={a.steps}",
        f"prompts_per_iteration={a.prompts}", f"rollout.k={a.k}", f"rollout.temperature={a.temperature}",
        "rollout.top_p=1.0", f"rollout.max_response_tokens={a.max_tokens}", "rollout.budget=0",
        "rollout.repeat_max_period=0", "loss.name=grpo", "loss.kwargs.grpo={clip_eps: 0.2, kl_coef: 0.0}",
        "steps_per_iteration=1", f"minibatch_size={a.prompts * a.k}", "target_kl=0", f"optim.lr={a.lr}",
        "optim.betas=[0.9,0.999]", "optim.weight_decay=0.0", "optim.grad_clip=1.0", "optim.schedule=constant",
        "optim.warmup_steps=0", "reset_optimizer=false", "length_penalty.weight=0.0", "sampling.strategy=uniform",
        "save_every=0", "export_llava=false", f"seed={seed}", f"output_dir={out / 'run'}"]
    subprocess.run([sys.executable, "-m", "vlrl.cli", "rl", "--config", "configs/tiny/rl.yaml", *overrides],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rows = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r["reward"] for r in rows if "reward" in r]


def stats(xs: list[float]) -> dict:
    return {"mean": round(statistics.fmean(xs), 4), "std": round(statistics.pstdev(xs), 4)}


def summarise(curves: dict[str, list[list[float]]], window: int) -> dict:
    """Per implementation: the reward curves, and first- / last-window means over seeds (mean, spread)."""
    out: dict = {}
    for name, runs in curves.items():
        first = [statistics.fmean(c[:window]) for c in runs]
        last = [statistics.fmean(c[-window:]) for c in runs]
        out[name] = {"curves": [[round(x, 4) for x in c] for c in runs], "first_window": stats(first),
                     "final_window": stats(last), "final_window_per_seed": [round(x, 4) for x in last]}
    v, t = out["vlrl"]["final_window"], out["trl"]["final_window"]
    gap = abs(v["mean"] - t["mean"])
    out["final_window_gap"] = round(gap, 4)
    out["agree_within_spread"] = gap <= v["std"] + t["std"]  # the means differ by less than the two spreads
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/tiny/warmup", help="a vlrl model directory (exported for TRL)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--k", type=int, default=8, help="samples per prompt (G)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--pool", type=int, default=512, help="prompts in the training set")
    p.add_argument("--data-seed", type=int, default=5)
    p.add_argument("--window", type=int, default=5, help="steps averaged at the start and at the end")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--out", default="runs/compare_trl")
    p.add_argument("--arm", choices=["vlrl", "trl"], help=argparse.SUPPRESS)  # one run, in a child process
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    out = Path(a.out)
    a.export = str(out / "hf")
    if a.arm:  # child: one implementation, one seed; writes its curve
        d = out / f"{a.arm}-s{a.seed}"
        d.mkdir(parents=True, exist_ok=True)
        curve = (run_trl if a.arm == "trl" else run_vlrl)(a, a.seed, d)
        (d / "rewards.json").write_text(json.dumps(curve))
        return
    if not (out / "hf" / "config.json").is_file():
        from vlrl.models import load_pretrained
        from vlrl.models.llava import export_llava

        model, processor = load_pretrained(a.model)
        export_llava(model, processor, out / "hf")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    curves: dict[str, list[list[float]]] = {"vlrl": [], "trl": []}
    times: dict[str, list[float]] = {"vlrl": [], "trl": []}
    for seed in a.seeds:  # alternate the implementations, so machine load drifts affect both alike
        for arm in ("vlrl", "trl"):
            f = out / f"{arm}-s{seed}" / "rewards.json"
            if not f.is_file():
                t = time.time()
                subprocess.run([sys.executable, __file__, *sys.argv[1:], "--arm", arm, "--seed", str(seed)],
                               check=True, env=env, cwd=ROOT)
                times[arm].append(time.time() - t)
                print(f"[compare] {arm} seed {seed}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
            curves[arm].append(json.loads(f.read_text()))
    result = {"model": a.model, "seeds": a.seeds, "steps": a.steps, "prompts": a.prompts, "k": a.k, "lr": a.lr,
              "temperature": a.temperature, "max_tokens": a.max_tokens, "window": a.window,
              **summarise(curves, a.window), "seconds_per_run": {k: [round(x) for x in v] for k, v in times.items()}}
    (out / "compare_trl_learning.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
