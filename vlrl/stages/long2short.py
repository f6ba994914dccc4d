"""Long2short (k1.5 §2.4): transfer long-CoT skill into shorter answers, four ways, then compare.

    vlrl long2short --config configs/tiny/long2short.yaml [methods=[merge,dpo] ...]
    vlrl merge MODEL_A MODEL_B --out DIR [--weights 0.5 0.5] [--modules llm]

Methods (any subset, in this order; each writes ``output_dir/<method>/`` and is skipped when its model
exists, so a re-run resumes):
- ``merge``: average the long-CoT and short-CoT models' weights.
- ``shortest_rs``: n samples per prompt from ``shortest_rs.sample_from`` (long or merge), the shortest
  correct one per prompt becomes an SFT target, trained with the warm-up stage's trainer.
- ``dpo``: n samples per prompt from the long model; chosen = shortest correct, rejected = wrong or
  >= ``dpo.ratio`` x longer correct; DPO loss with reference log-probs computed once.
- ``rl``: the RL stage from the best-efficiency model so far (``rl.start``: the most accurate of the models
  at least ``rl.min_token_cut`` shorter than long) with the length penalty on and a much smaller maximum
  response length (``rl.overrides``).
It ends with the token-efficiency report (``output_dir/report.*``): pass@1 and mean tokens per modality
for every method and the starting models, and the accuracy-vs-tokens plot.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Optional

import torch

from vlrl.algos.merge import merge_models
from vlrl.config import LoRAConfig, OptimConfig, save_config
from vlrl.distributed import barrier, gather_objects, init_from_launcher, is_main, launcher_precision, world
from vlrl.eval.metrics import PromptRecord
from vlrl.models.builder import CONFIG_NAME, WEIGHTS_NAME
from vlrl.rewards.config import RewardConfig, verifier_config

METHODS = ("merge", "shortest_rs", "dpo", "rl")


@dataclass
class SampleConfig:
    n: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 256
    batch_size: int = 32


@dataclass
class MergeConfig:
    weights: List[float] = field(default_factory=lambda: [0.5, 0.5])  # long, short
    modules: List[str] = field(default_factory=list)  # empty = every module


@dataclass
class ShortestRSConfig:
    sample_from: str = "long"  # long | merge (the paper's "merge + rs")
    select: str = "shortest"  # shortest correct response per prompt, or all correct ones (ReST, an RL baseline)
    steps: int = 150
    batch_size: int = 32
    lr: float = 5.0e-4
    lora: Optional[LoRAConfig] = None  # adapters instead of full weights (merged into the saved model)
    # the method's whole wall-time budget, sampling included: fine-tuning ends when it is spent (the
    # rejection-sampling baseline at RL's wall time, scripts/bench_learning.py)
    time_limit_minutes: Optional[float] = None


@dataclass
class DPOConfig:
    ratio: float = 1.5
    pairs_per_prompt: int = 2
    beta: float = 0.1
    epochs: int = 2
    minibatch_size: int = 64  # responses (2 per pair) per optimizer step
    micro_batch_size: int = 16
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, schedule="constant"))
    lora: Optional[LoRAConfig] = None  # adapters instead of full weights (merged into the saved model)
    sharding: str = "auto"  # auto | none | fsdp: FSDP2 for the update, as the RL stage's ``sharding``


@dataclass
class L2SRLConfig:
    config: str = "configs/tiny/rl.yaml"  # the RL stage config it starts from
    # the model it starts from: "best" = the best-efficiency model so far (k1.5 §9: the highest pass@1 among
    # the models >= min_token_cut shorter than long; long if none), or long / short / merge / shortest_rs / dpo
    start: str = "best"
    min_token_cut: float = 0.4
    # a length weight as large as correctness (1.0) trades accuracy for brevity; 0.2 keeps correctness first
    # (the tiny model's numbers: docs/results.md)
    overrides: List[str] = field(default_factory=lambda: ["length_penalty.weight=0.2", "rollout.max_response_tokens=128"])


@dataclass
class Long2ShortConfig:
    long_model: str = "runs/tiny/rl"
    short_model: Optional[str] = None  # needed by merge
    methods: List[str] = field(default_factory=lambda: list(METHODS))
    sources: List[Any] = field(default_factory=list)  # prompts with reference answers to sample on
    eval_sources: List[Any] = field(default_factory=list)
    eval_max_new_tokens: int = 256
    reward: RewardConfig = field(default_factory=verifier_config)  # scores samples and the evaluations
    sample: SampleConfig = field(default_factory=SampleConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    shortest_rs: ShortestRSConfig = field(default_factory=ShortestRSConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    rl: L2SRLConfig = field(default_factory=L2SRLConfig)
    seed: int = 0
    # auto | fp32 | bf16 for every method (sampling, DPO, the shortest-RS SFT, RL, the evaluations):
    # autocast with fp32 weights; auto follows the launcher's --mixed_precision
    precision: str = "auto"
    output_dir: str = "runs/tiny/long2short"


def _done(path: Path) -> bool:
    return (path / WEIGHTS_NAME).is_file() and (path / CONFIG_NAME).is_file()


def sample_records(model_dir: str, cfg: Long2ShortConfig, cache: Path) -> tuple[list[PromptRecord], list]:
    """n scored samples per prompt from ``model_dir`` (cached in ``cache`` as JSONL). Under several
    processes each samples every world-th prompt; the records are gathered in prompt order and the main
    process writes the cache. Collective."""
    from vlrl.eval import evaluate_samples
    from vlrl.models import SamplingParams, load_pretrained
    from vlrl.data import load_data

    samples = load_data(cfg.sources)
    if not cache.is_file():
        rank, n = world()
        model, processor = load_pretrained(model_dir, precision=launcher_precision(cfg.precision, "long2short"))
        s = cfg.sample
        params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature, num_samples=s.n)
        mine = evaluate_samples(model, processor, samples[rank::n], params, cfg.reward.build(),
                                s.batch_size, cfg.seed + rank, progress=is_main())
        shards = gather_objects([asdict(r) for r in mine])
        records = [shards[i % n][i // n] for i in range(len(samples))]  # back to prompt order
        if is_main():
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
            tmp.replace(cache)
        barrier()
    return [PromptRecord(**json.loads(x)) for x in cache.read_text().splitlines()], samples


def run_shortest_rs(cfg: Long2ShortConfig, base: str, samples_cache: Path, out: Path) -> None:
    from vlrl.config import load_config
    from vlrl.data.long2short import shortest_rs_samples
    from vlrl.data.synth import write_dataset
    from vlrl.stages import warmup

    t0 = time.time()
    records, samples = sample_records(base, cfg, samples_cache)
    sft = shortest_rs_samples(records, samples, cfg.shortest_rs.select)
    if not sft:
        raise ValueError(f"shortest_rs: no prompt has a correct response among {cfg.sample.n} samples from {base}")

    data = out / "data" / "data.jsonl"
    if is_main():
        write_dataset(sft, out / "data")
        solved = sum(any(r.correct) for r in records)
        print(f"[shortest_rs] {len(sft)} responses ({cfg.shortest_rs.select} correct) from the {solved} of "
              f"{len(records)} prompts with a correct one -> {data}")
    barrier()
    rs = cfg.shortest_rs
    wcfg = load_config(warmup.WarmupConfig, None, [
        f"init_from={base}", f"data.sources=[{data}]", f"phases=[{{steps: {rs.steps}}}]", f"batch_size={rs.batch_size}",
        f"optim.lr={rs.lr}", "optim.warmup_steps=10", f"output_dir={out}", f"seed={cfg.seed}", "trackers=[]",
        f"precision={cfg.precision}"])
    wcfg.model.lora = rs.lora
    if rs.time_limit_minutes is not None:
        wcfg.time_limit_minutes = max(0.0, rs.time_limit_minutes - (time.time() - t0) / 60)
    warmup.main(wcfg)


def _dpo_rows(pairs: list, processor) -> tuple[list, list[float], list[int]]:
    """This process's share of the pairs as scored rows: per pair its chosen (reward 1) and rejected
    (reward 0) response, both in the pair's group."""
    from vlrl.rollout.buffer import Trajectory

    rank, n_proc = world()
    trajs, rewards, group = [], [], []
    for p in list(range(len(pairs)))[rank::n_proc]:
        for text, r in ((pairs[p].chosen, 1.0), (pairs[p].rejected, 0.0)):
            t = Trajectory(pairs[p].sample, finish="stop")
            t.add_segment(processor.tokenize(text) + [processor.eos_token_id], 0)
            trajs.append(t)
            rewards.append(r)
            group.append(p)
    return trajs, rewards, group


def run_dpo(cfg: Long2ShortConfig, samples_cache: Path, out: Path) -> None:
    """DPO (k1.5 §2.4) on (shortest correct, longer or wrong) pairs of the long model's samples; the
    update is sharded (FSDP2) when ``dpo.sharding`` resolves to fsdp, and the model is saved once whole."""
    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.data.long2short import dpo_pairs
    from vlrl.models import load_pretrained, save_pretrained
    from vlrl.rollout.scoring import scoring_batch
    from vlrl.sharding import Policy, launcher_strategy
    from vlrl.training import build_optimizer, seed_everything

    strategy = launcher_strategy(cfg.dpo.sharding, "dpo")
    seed_everything(cfg.seed)
    records, samples = sample_records(cfg.long_model, cfg, samples_cache)
    pairs = dpo_pairs(records, samples, cfg.dpo.ratio, cfg.dpo.pairs_per_prompt)
    if not pairs:
        raise ValueError("dpo: no preference pairs (no prompt has a correct response and a wrong or longer one)")
    model, processor = load_pretrained(cfg.long_model, precision=launcher_precision(cfg.precision, "dpo"))
    if cfg.dpo.lora is not None:
        from vlrl.models.lora import add_lora
        from vlrl.models.trainable import MODULES, set_trainable

        add_lora(model, cfg.dpo.lora)
        set_trainable(model, MODULES, key="dpo")
    trajs, rewards, group = _dpo_rows(pairs, processor)
    if is_main():
        shard = f"; FSDP2 over {world()[1]} processes" if strategy == "fsdp" else ""
        print(f"[dpo] {len(pairs)} pairs ({sum(not p.rejected_correct for p in pairs)} with a wrong rejected "
              f"answer){shard}")
    batch = scoring_batch(processor, trajs, 0, False) if trajs else None
    policy = Policy(model, strategy)
    opt = build_optimizer(list(policy.train.parameters()), cfg.dpo.optim)
    policy.train.train()
    stats = policy_update(policy.train, batch, torch.tensor(rewards), torch.tensor(group), LOSSES.get("dpo"),
                          {"beta": cfg.dpo.beta}, opt,
                          UpdateConfig(passes=cfg.dpo.epochs, minibatch_size=cfg.dpo.minibatch_size,
                                       micro_batch_size=cfg.dpo.micro_batch_size, grad_clip=cfg.dpo.optim.grad_clip))
    if is_main():
        print("[dpo] last step: " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    policy.updated()
    model = policy.full()  # collective when sharded
    if is_main():
        save_pretrained(model, processor, out)


def run_rl(cfg: Long2ShortConfig, models: dict[str, str], out: Path) -> None:
    from vlrl.config import load_config
    from vlrl.eval.efficiency import best_efficiency
    from vlrl.stages import rl

    start = cfg.rl.start
    if start == "best":
        start = best_efficiency(evaluate_models(cfg, models, out.parent), "long", cfg.rl.min_token_cut)
    elif start not in models:
        raise ValueError(f"long2short: rl.start '{start}' is not 'best' or one of the models so far {sorted(models)}")
    if is_main():
        print(f"[long2short] rl starts from '{start}' ({models[start]})")
    rcfg = load_config(rl.RLConfig, cfg.rl.config, [f"precision={cfg.precision}", *cfg.rl.overrides,
                                                     f"init_from={models[start]}", f"output_dir={out}",
                                                     "eval_sources=[]"])
    rl.main(rcfg)
    if is_main():
        (out / "start.txt").write_text(f"{start}\n{models[start]}\n")


def evaluate_models(cfg: Long2ShortConfig, models: dict[str, str], out: Path) -> dict[str, dict]:
    """Held-out evaluation report of every model (cached under ``out/eval/<name>/``; the main process
    evaluates, the others wait and read the cache). The evaluation a model's own stage already made with
    the same settings (``heldout.stage_evaluation``) is reused rather than repeated. Collective."""
    from vlrl.models import load_pretrained
    from vlrl.eval import heldout

    if is_main():
        for name, path in models.items():
            cached = out / "eval" / name / "eval.json"
            if cached.is_file():
                continue
            done = heldout.stage_evaluation(path, cfg.eval_sources, cfg.eval_max_new_tokens, cfg.reward)
            if done is not None:
                heldout.copy_evaluation(done, cached.parent, name)
                print(f"[long2short] {name}: reusing its stage's evaluation on the same held-out set ({done})")
            else:
                model, processor = load_pretrained(path, precision=launcher_precision(cfg.precision, "long2short"))
                heldout.evaluate_held_out(model, processor, cfg.eval_sources, cfg.eval_max_new_tokens, cached.parent,
                                          name, cfg.reward)
    barrier()
    return {name: json.loads((out / "eval" / name / "eval.json").read_text()) for name in models}


def efficiency(cfg: Long2ShortConfig, models: dict[str, str], out: Path) -> dict:
    """Evaluate every model (cached per model) and write the token-efficiency report (main process)."""
    from vlrl.eval.efficiency import write_efficiency_report

    reports = evaluate_models(cfg, models, out)
    if is_main():
        write_efficiency_report(reports, out, "long")
    barrier()
    result = json.loads((out / "report.json").read_text())
    if not is_main():
        return result
    print(f"[long2short] token-efficiency report -> {out / 'report.md'}")
    for name, row in result["relative"].get("overall", {}).items():
        print(f"[long2short]   {name:12s} token cut {row['token_cut']:+.1%}, accuracy {row['accuracy_change_points']:+.1f} pts")
    return result


def _check(cfg: Long2ShortConfig) -> None:
    bad = [m for m in cfg.methods if m not in METHODS]
    if bad:
        raise ValueError(f"long2short: unknown method(s) {bad}; choose from {list(METHODS)}")
    if "merge" in cfg.methods and not cfg.short_model:
        raise ValueError("long2short: the merge method needs short_model=<a short-CoT model directory>")
    if "shortest_rs" in cfg.methods and cfg.shortest_rs.sample_from not in ("long", "merge"):
        raise ValueError(f"long2short: shortest_rs.sample_from '{cfg.shortest_rs.sample_from}' is not long or merge")
    if cfg.shortest_rs.sample_from == "merge" and "shortest_rs" in cfg.methods and "merge" not in cfg.methods:
        raise ValueError("long2short: shortest_rs.sample_from=merge needs the merge method in methods")
    if "rl" in cfg.methods and cfg.rl.start == "best" and not cfg.eval_sources:
        raise ValueError("long2short: rl.start=best compares the models on eval_sources; set eval_sources or name "
                         "the start model (rl.start=long|short|merge|shortest_rs|dpo)")


def _run_method(method: str, cfg: Long2ShortConfig, models: dict[str, str], out: Path) -> None:
    """Train one method into ``out/<method>``; collective under several processes."""

    d = out / method
    if method == "merge":
        if is_main():
            merge_models([cfg.long_model, cfg.short_model], d, cfg.merge.weights, cfg.merge.modules)
    elif method == "shortest_rs":
        src = cfg.shortest_rs.sample_from
        base = str(out / "merge") if src == "merge" else cfg.long_model
        run_shortest_rs(cfg, base, out / "samples" / f"{src}.jsonl", d)
    elif method == "dpo":
        run_dpo(cfg, out / "samples" / "long.jsonl", d)
    else:
        run_rl(cfg, models, d)
    barrier()  # the main process has saved the model before anyone reads it


def main(cfg: Long2ShortConfig) -> dict:

    _check(cfg)
    init_from_launcher()
    out = Path(cfg.output_dir)
    if is_main():
        save_config(cfg, out / "config.yaml")
    models = {"long": cfg.long_model, **({"short": cfg.short_model} if cfg.short_model else {})}
    for method in [m for m in METHODS if m in cfg.methods]:
        if not _done(out / method):
            _run_method(method, cfg, models, out)
        models[method] = str(out / method)
    return efficiency(cfg, models, out) if cfg.eval_sources else {}
