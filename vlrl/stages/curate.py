"""Curation stage: a raw text / image-text pool -> a tagged, filtered, balanced RL prompt set (k1.5 §2.1).

    vlrl curate --config configs/tiny/curate.yaml [key=value ...]
    accelerate launch -m vlrl.cli curate --config ...   # the probes are sharded over processes

Steps: tag (domain / discipline, modality, answer type) -> rule filters (multiple choice, true/false,
proof, no reference answer) -> easy-to-hack probe (``hack``: N forced answers without reasoning, any
correct one removes the prompt) -> difficulty probe (``difficulty``: N sampled solutions, pass rate ->
bucket; optionally drop trivial / unsolved) -> balanced selection. Probes are cached per prompt and
model under ``cache_dir``, so a re-run or an interrupted run only generates what is missing.

Outputs in ``output_dir``: ``data.jsonl`` + ``images/`` (the standard dataset format; ``meta.tags``,
``meta.pass_rate`` and ``difficulty`` = the pass-rate bucket level, which the RL samplers read),
``removed.jsonl`` (id and reasons), ``report.json`` / ``report.md`` / ``report.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from vlrl.config import save_config
from vlrl.curation import (DEFAULT_DISCIPLINES, DEFAULT_DOMAINS, ProbeCache, ProbeConfig, RuleFilterConfig,
                           balanced_select, bucket, easy_to_hack, model_identity, probe, rule_reasons, tag_sample)
from vlrl.curation.report import distribution, kind_check, write_report
from vlrl.curation.tags import model_domains
from vlrl.data import load_data
from vlrl.distributed import is_main, launcher_precision
from vlrl.rewards.config import RewardConfig, verifier_config


@dataclass
class TaggerConfig:
    # keyword rules per domain and domains per discipline; empty = the built-in ones (curation/tags.py).
    # (Empty defaults, because a YAML dict merges into a default dict instead of replacing it.)
    domains: Dict[str, List[str]] = field(default_factory=dict)
    disciplines: Dict[str, List[str]] = field(default_factory=dict)
    model_based: bool = False  # ask `model` to choose the domain among `domains` (rules decide when it names none)


DEFAULT_BUCKETS = {"trivial": 1.0, "easy": 0.7, "medium": 0.3, "hard": 0.01, "unsolved": 0.0}


@dataclass
class HackConfig:
    enabled: bool = True
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(
        n=8, temperature=1.0, max_new_tokens=8, guess_prefix="Answer:",
        system_prompt="Answer with the final answer only, no reasoning."))


@dataclass
class DifficultyConfig:
    enabled: bool = True
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(n=10, temperature=1.0, max_new_tokens=200))
    # bucket name -> lowest pass rate in it; empty = DEFAULT_BUCKETS
    buckets: Dict[str, float] = field(default_factory=dict)
    drop_trivial: bool = True
    drop_unsolved: bool = False
    set_difficulty: bool = True  # write the bucket level into `difficulty` (the original goes to meta)


@dataclass
class SelectionConfig:
    target: int = 0  # prompts to select; 0 = keep everything that passed the filters
    by: List[str] = field(default_factory=lambda: ["domain", "difficulty", "modality"])
    proportions: Dict[str, Dict[str, float]] = field(default_factory=dict)  # per key; missing = equal shares
    fill: bool = False  # take the shortfall of thin cells from cells with prompts to spare


@dataclass
class CurateConfig:
    sources: List[Any] = field(default_factory=list)
    model: str = ""  # model for the probes and the model tagger (e.g. the warm-up SFT model); "" = rules only
    reward: RewardConfig = field(default_factory=verifier_config)
    tagger: TaggerConfig = field(default_factory=TaggerConfig)
    filters: RuleFilterConfig = field(default_factory=RuleFilterConfig)
    hack: HackConfig = field(default_factory=HackConfig)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    cache_dir: str = ""  # default: <output_dir>/cache
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 (autocast, fp32 weights); auto: the launcher's --mixed_precision
    output_dir: str = "runs/tiny/curate"


class _Funnel:
    """Tracks the surviving prompts, the removal reasons per id and the count after each step."""

    def __init__(self, pool: list) -> None:
        self.kept, self.removed, self.steps = list(pool), {}, [["pool", len(pool)]]

    def drop(self, step: str, reasons_of) -> None:
        kept = []
        for s in self.kept:
            reasons = reasons_of(s)
            if reasons:
                self.removed[s.id] = reasons
            else:
                kept.append(s)
        self.kept = kept
        self.steps.append([step, len(kept)])


def _probe_all(accel, model, processor, samples, cfg: ProbeConfig, reward_fn, cache_dir: Path, mode: str,
               model_id: str, seed: int) -> dict:
    """Each process probes its shard (cached), then every process reads all shards from the cache."""
    cache = ProbeCache(cache_dir, mode, accel.process_index)
    mine = samples[accel.process_index :: accel.num_processes]
    probe(model, processor, mine, cfg, reward_fn, cache, model_id, seed, desc=mode, progress=is_main())
    accel.wait_for_everyone()
    cache.reload()
    return probe(model, processor, samples, cfg, reward_fn, cache, model_id, seed, progress=False)


def _difficulty(s, rates: dict, cfg: DifficultyConfig) -> list[str]:
    rate = sum(rates[s.id]) / len(rates[s.id])
    name, level = bucket(rate, cfg.buckets or DEFAULT_BUCKETS)
    s.meta["pass_rate"], s.meta["tags"]["difficulty"] = rate, name
    if cfg.set_difficulty:
        s.meta["source_difficulty"], s.difficulty = s.difficulty, level
    if cfg.drop_trivial and rate >= 1.0:
        return ["trivial"]
    return ["unsolved"] if cfg.drop_unsolved and rate == 0.0 else []


def _write(out: Path, cfg: CurateConfig, pool: list, funnel: _Funnel, selected: list, sel_report: dict | None):
    from collections import Counter

    from vlrl.data.synth import write_dataset

    write_dataset(selected, out)
    with (out / "removed.jsonl").open("w") as f:
        for sid, reasons in funnel.removed.items():
            f.write(json.dumps({"id": sid, "reasons": reasons}) + "\n")
    rep = {"funnel": funnel.steps + [["selected", len(selected)]],
           "reasons": dict(Counter(r for rs in funnel.removed.values() for r in rs).most_common()),
           "kinds": kind_check(pool, funnel.removed, {s.id for s in selected}),
           "distribution": {k: distribution(selected, k) for k in ("modality", "difficulty", "domain", "answer_type")},
           "selection": sel_report, "model": cfg.model or None}
    write_report(rep, out)
    return rep


def main(cfg: CurateConfig) -> dict:
    from vlrl.distributed import accelerator
    from vlrl.models import load_pretrained

    accel, out = accelerator(), Path(cfg.output_dir)
    if is_main():
        save_config(cfg, out / "config.yaml")
    pool = load_data(cfg.sources)
    needs_model = cfg.hack.enabled or cfg.difficulty.enabled or cfg.tagger.model_based
    if needs_model and not cfg.model:
        raise ValueError("curate: the hack / difficulty probes and the model tagger need model=<a saved model "
                         "directory>; or switch them off (hack.enabled=false difficulty.enabled=false)")
    precision = launcher_precision(cfg.precision, "curate")
    model, processor = load_pretrained(cfg.model, accel.device, precision) if needs_model else (None, None)
    domains, disciplines = cfg.tagger.domains or DEFAULT_DOMAINS, cfg.tagger.disciplines or DEFAULT_DISCIPLINES
    guesses = model_domains(model, processor, pool, list(domains)) if cfg.tagger.model_based else None
    for i, s in enumerate(pool):
        tag_sample(s, domains, disciplines, guesses[i] if guesses else None)
    funnel = _Funnel(pool)
    funnel.drop("rule filters", lambda s: rule_reasons(s, cfg.filters))
    reward_fn = cfg.reward.build()
    cache_dir, model_id = Path(cfg.cache_dir or out / "cache"), model_identity(cfg.model) if cfg.model else ""
    if cfg.hack.enabled:
        guessed = _probe_all(accel, model, processor, funnel.kept, cfg.hack.probe, reward_fn, cache_dir, "guess",
                             model_id, cfg.seed)
        for s in funnel.kept:
            s.meta["guess_rate"] = sum(guessed[s.id]) / len(guessed[s.id])
        funnel.drop("easy-to-hack", lambda s: ["easy_to_hack"] if easy_to_hack(guessed[s.id]) else [])
    if cfg.difficulty.enabled:
        rates = _probe_all(accel, model, processor, funnel.kept, cfg.difficulty.probe, reward_fn, cache_dir, "solve",
                           model_id, cfg.seed)
        funnel.drop("difficulty", lambda s: _difficulty(s, rates, cfg.difficulty))
    selected, sel_report = funnel.kept, None
    if cfg.selection.target:
        selected, sel_report = balanced_select(funnel.kept, cfg.selection.target, cfg.selection.by,
                                               cfg.selection.proportions, cfg.selection.fill, cfg.seed)
    rep = _write(out, cfg, pool, funnel, selected, sel_report) if is_main() else {}
    if is_main():
        print("[curate] " + " -> ".join(f"{step} {n}" for step, n in rep["funnel"]))
        print(f"[curate] {len(selected)} prompts -> {out / 'data.jsonl'} (report: {out / 'report.md'})")
    if not selected:
        raise ValueError(f"curate: no prompt survived the filters (see {out / 'report.md'} for what removed them)")
    return rep
