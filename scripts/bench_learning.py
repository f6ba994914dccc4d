"""Does RL teach? Held-out pass@1 of the RL stage against equal-time baselines from one warm-up. Prints JSON.

    python scripts/bench_learning.py                    # 3 seeds, the embedded default (about 2 h on 2 cores)
    python scripts/bench_learning.py --quick            # 1 seed, a smaller budget and held-out set (< 10 min)
    python scripts/bench_learning.py --warmup runs/tiny/warmup --arms rl sft rs --seeds 0 1 2 --jobs 2

Every arm starts from the same warm-up (``--warmup``; built with ``vlrl align`` + ``vlrl warmup`` from
``configs/tiny/`` when the directory holds no model) and is evaluated on the same held-out set (the RL
config's ``eval_sources``), greedy and as the mean over 8 samples at T 1 (k1.5's "pass@1 averaged over
8 runs", what RL optimizes). Arms:

- ``rl``: ``vlrl rl --config configs/tiny/rl.yaml`` (the pipeline's RL stage); its wall time sets the
  budget of the time-matched baselines of the same seed;
- ``sft``: (a) continued SFT on the warm-up's own trace set (its ``config.yaml``'s ``data.sources``) for
  that wall time (``time_limit_minutes``);
- ``rs``: (b) rejection-sampling fine-tuning (ReST; the shortest-RS code with ``select=all``): as many
  RL-pool prompts as the rl arm draws, each sampled as often as the rl arm samples it (its ``rollout.k``)
  at T 1, so both see the same number of responses; every correct one is an SFT target (the shortest
  alone would teach short answers), sampling and fine-tuning together within that wall time;
- ``grpo``, ``rloo``: (c) the RL config with ``loss.name`` switched, same iterations (their wall time is
  reported; the loss costs the same).

The JSON has, per arm, the mean and spread (population std) over seeds of greedy and sampled pass@1 per
modality and of the wall time, plus ``rl_gain/<modality>``: points of sampled pass@1 the ``rl`` arm adds
over the warm-up (mean over seeds; ``rl_gain_std/<modality>`` is the spread) and ``rl_minus_<arm>/<modality>``:
RL minus each baseline in the same points, paired by seed, with the seeds RL is ahead on. Finished arms are reused
(a re-run continues where it stopped); ``--fresh`` starts over. Runs go to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("rl", "sft", "rs", "grpo", "rloo")
MODALITIES = ("image", "text", "text_rendered")


def vlrl(args: list[str], log: Path, threads: int) -> float:
    """Run ``vlrl ARGS`` (this interpreter), output to ``log``; return its wall time in seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    with log.open("w") as f:
        rc = subprocess.call([sys.executable, "-m", "vlrl.cli", *args], stdout=f, stderr=subprocess.STDOUT,
                             env=env, cwd=ROOT)
    if rc != 0:
        raise RuntimeError(f"vlrl {' '.join(args[:3])} ... failed (exit {rc}); see {log}")
    return time.time() - t


def with_n(source: str, n: int) -> str:
    """A synthetic source with its sample count replaced: synth:shapes?n=1500&seed=2 -> ...?n=N&seed=2."""
    return re.sub(r"([?&])n=\d+", rf"\g<1>n={n}", source)


class Bench:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a, self.out = a, Path(a.out)
        self.rl_cfg = yaml.safe_load((ROOT / a.rl_config).read_text())
        self.eval_sources = a.eval_sources or self.rl_cfg["eval_sources"]
        if a.quick:  # a quarter of the held-out set
            from vlrl.data.records import parse_synth_spec

            self.eval_sources = [with_n(s, max(10, parse_synth_spec(s)[1]["n"] // 4)) for s in self.eval_sources]
        self.rl_overrides = list(a.rl_override)
        if a.quick:
            self.rl_overrides = [f"iterations={a.quick_iterations}", *self.rl_overrides]

    def rl_setting(self, key: str) -> str:
        """An RL setting (``rollout.k``: dotted for nested keys) as the rl arm runs it: its last ``key=``
        override, else the config's."""
        given = [o.split("=", 1)[1] for o in self.rl_overrides if o.split("=", 1)[0] == key]
        if given:
            return given[-1]
        value = self.rl_cfg
        for part in key.split("."):
            value = value[part]
        return str(value)

    def _log(self, msg: str) -> None:
        print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    def warmup(self) -> Path:
        """The warm-up model every arm starts from (built from configs/tiny when missing)."""
        w = Path(self.a.warmup)
        if (w / "model.safetensors").is_file():
            return w
        align = w.parent / "align"
        if not (align / "model.safetensors").is_file():
            self._log(f"building the aligned model in {align}")
            vlrl(["align", "--config", "configs/tiny/align.yaml", f"output_dir={align}"], self.out / "logs/align.log",
                 self.a.threads_total)
        self._log(f"building the warm-up in {w}")
        vlrl(["warmup", "--config", "configs/tiny/warmup.yaml", f"init_from={align}", f"output_dir={w}"],
             self.out / "logs/warmup.log", self.a.threads_total)
        return w

    def eval_dir(self, model: Path, how: str) -> Path:
        """Where ``model``'s ``how`` (greedy | sampled) evaluation is cached: one directory per held-out set
        and sample count, since one model may be measured on several sets (validation and held-out)."""
        tag = hashlib.sha1(json.dumps([self.eval_sources, self.a.samples]).encode()).hexdigest()[:8]
        return model / "bench_eval" / f"{how}-{tag}"

    def evaluate(self, model: Path, threads: int) -> dict:
        """{greedy/<modality>, sampled/<modality>} pass@1 of ``model`` on the held-out set (cached)."""
        result: dict = {}
        for how, extra in (("greedy", ["n=1", "temperature=0.0"]),
                           ("sampled", [f"n={self.a.samples}", "temperature=1.0"])):
            d = self.eval_dir(model, how)
            if not (d / "eval.json").is_file():
                vlrl(["eval", f"model={model}", f"sources=[{','.join(self.eval_sources)}]", "max_new_tokens=256",
                      "ks=[1]", "reward.kwargs={symbolic: false}", f"output_dir={d}", *extra], d / "eval.log", threads)
            rep = json.loads((d / "eval.json").read_text())
            result[f"{how}/overall"] = rep["overall"]["pass@1"]
            result.update({f"{how}/{m}": v["pass@1"] for m, v in rep["by_modality"].items()})
        return result

    def train(self, arm: str, seed: int, warm: Path, rl_wall: Future | None, threads: int) -> dict:
        """Train one arm (unless already done), then evaluate it; returns its metrics and wall time."""
        d = self.out / f"{arm}-s{seed}"
        wall_file = d / "bench_wall_s.txt"
        if not wall_file.is_file():
            cmd = self.command(arm, seed, warm, d, rl_wall.result()["wall_s"] / 60 if rl_wall else None)
            self._log(f"{arm} seed {seed}: training")
            wall_file.parent.mkdir(parents=True, exist_ok=True)
            wall = vlrl(cmd, self.out / "logs" / f"{arm}-s{seed}.log", threads)
            wall_file.write_text(f"{wall:.1f}\n")
        model = d / "rs" / "shortest_rs" if arm == "rs" else d
        self._log(f"{arm} seed {seed}: evaluating")
        return {"wall_s": float(wall_file.read_text()), **self.evaluate(model, threads)}

    def command(self, arm: str, seed: int, warm: Path, d: Path, minutes: float | None) -> list[str]:
        common = [f"seed={seed}", f"output_dir={d}"]
        if arm in ("rl", "grpo", "rloo"):
            loss = [] if arm == "rl" else [f"loss.name={arm}"]
            return ["rl", "--config", self.a.rl_config, f"init_from={warm}", "eval_every=0", "eval_at_start=false",
                    "save_every=0", "export_llava=false", *self.rl_overrides, *loss, *common]
        if arm == "sft":
            traces = yaml.safe_load((warm / "config.yaml").read_text())["data"]["sources"]
            return ["warmup", "--config", "configs/tiny/warmup.yaml", f"init_from={warm}",
                    f"data.sources=[{','.join(traces)}]", "phases=[{steps: 1000000}]", f"optim.lr={self.a.sft_lr}",
                    "optim.warmup_steps=10", "optim.schedule=constant", f"time_limit_minutes={minutes}",
                    "eval_sources=[]", "save_every=0", "export_llava=false", "trackers=[]", *common]
        if arm == "rs":  # as many prompts as the RL arm draws, from the RL pool, and as many samples of each
            cfg = self.rl_cfg
            its, prompts = int(self.rl_setting("iterations")), int(self.rl_setting("prompts_per_iteration"))
            per_source = max(1, its * prompts // len(cfg["sources"]))
            pool = [with_n(s, per_source) for s in cfg["sources"]]
            return ["long2short", "--config", "configs/tiny/long2short.yaml", f"long_model={warm}",
                    "methods=[shortest_rs]", "shortest_rs.sample_from=long", "shortest_rs.select=all", "eval_sources=[]",
                    f"sources=[{','.join(pool)}]",
                    f"sample.n={self.rl_setting('rollout.k')}", "sample.temperature=1.0", "shortest_rs.steps=1000000",
                    f"shortest_rs.lr={self.a.rs_lr}", f"shortest_rs.time_limit_minutes={minutes}",
                    f"seed={seed}", f"output_dir={d / 'rs'}"]
        raise ValueError(f"unknown arm '{arm}'; choose from {ARMS}")

    def run(self) -> dict:
        warm = self.warmup()
        jobs = self.a.jobs
        threads = max(1, self.a.threads_total // jobs)
        results: dict[str, list[dict]] = {}
        with ThreadPoolExecutor(jobs) as pool:
            start = pool.submit(self.evaluate, warm, threads)
            rl = {s: pool.submit(self.train, "rl", s, warm, None, threads) for s in self.a.seeds}
            others = [(arm, s, pool.submit(self.train, arm, s, warm, rl[s] if arm in ("sft", "rs") else None, threads))
                      for arm in self.a.arms if arm != "rl" for s in self.a.seeds]
            results["warmup"] = [start.result()]
            results["rl"] = [rl[s].result() for s in self.a.seeds]
            for arm, _, f in others:
                results.setdefault(arm, []).append(f.result())
        return summarise(results, self.a)


def mean_std(xs: list[float]) -> dict:
    return {"mean": round(statistics.fmean(xs), 4), "std": round(statistics.pstdev(xs), 4), "n": len(xs)}


def summarise(results: dict[str, list[dict]], a: argparse.Namespace) -> dict:
    """Per arm: mean and spread over seeds of every metric; rl_gain/<modality> in points of sampled pass@1."""
    out: dict = {"seeds": a.seeds, "quick": a.quick, "warmup": a.warmup, "rl_config": a.rl_config,
                 "rl_overrides": a.rl_override, "samples": a.samples, "arms": {}}
    for arm, runs in results.items():
        keys = sorted({k for r in runs for k in r})
        out["arms"][arm] = {k: mean_std([r[k] for r in runs if k in r]) for k in keys}
    start = results["warmup"][0]
    for m in MODALITIES:
        key = f"sampled/{m}"
        if key in start:
            gains = [100 * (r[key] - start[key]) for r in results["rl"]]
            out[f"rl_gain/{m}"] = round(statistics.fmean(gains), 2)
            out[f"rl_gain_std/{m}"] = round(statistics.pstdev(gains), 2)
    out.update(paired_with_rl(results))
    return out


def paired_with_rl(results: dict[str, list[dict]]) -> dict:
    """``rl_minus_<arm>/<modality>``: the rl arm's sampled pass@1 minus a baseline's, in points, paired by
    seed (a seed's baseline ran from the same warm-up for that seed's RL wall time): mean, spread and
    ``rl_ahead``, the seeds on which RL scored higher. Arms without one run per RL seed are left out."""
    out: dict = {}
    rl = results["rl"]
    for arm, runs in results.items():
        if arm in ("warmup", "rl") or len(runs) != len(rl):
            continue
        for m in MODALITIES:
            key = f"sampled/{m}"
            diffs = [100 * (r[key] - b[key]) for r, b in zip(rl, runs) if key in r and key in b]
            if diffs:
                out[f"rl_minus_{arm}/{m}"] = {**mean_std(diffs), "rl_ahead": sum(d > 0 for d in diffs)}
    return out


def markdown(result: dict) -> str:
    """The JSON as a markdown table: one row per arm, mean +- spread over seeds (pass@1 as fractions)."""
    cols = [f"{how}/{m}" for how in ("greedy", "sampled") for m in MODALITIES
            if any(f"{how}/{m}" in arm for arm in result["arms"].values())]
    lines = ["| arm | seeds | " + " | ".join(cols) + " | wall s |", "|---|---|" + "---|" * (len(cols) + 1)]
    for name, arm in result["arms"].items():
        cells = [f"{arm[c]['mean']:.3f} ± {arm[c]['std']:.3f}" if c in arm else "" for c in cols]
        wall = arm.get("wall_s", {"mean": 0.0})["mean"]
        lines.append(f"| {name} | {arm[cols[0]]['n']} | " + " | ".join(cells) + f" | {wall:.0f} |")
    gains = [f"{m} {result[f'rl_gain/{m}']:+.1f} ± {result[f'rl_gain_std/{m}']:.1f}" for m in MODALITIES
             if f"rl_gain/{m}" in result]
    paired = [f"{key.removeprefix('rl_minus_').replace('/', ' ')} {v['mean']:+.1f} ± {v['std']:.1f} "
              f"(ahead on {v['rl_ahead']} of {v['n']})" for key, v in result.items() if key.startswith("rl_minus_")]
    tail = ["RL minus each baseline, paired by seed, sampled points: " + ", ".join(paired)] if paired else []
    return "\n".join(lines + ["", "RL gain over the warm-up, sampled pass@1 points: " + ", ".join(gains), *tail])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warmup", default="runs/tiny/warmup", help="the warm-up model every arm starts from")
    p.add_argument("--rl-config", default="configs/tiny/rl.yaml")
    p.add_argument("--rl-override", nargs="*", default=[], help="key=value overrides of the RL config (all RL arms)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--eval-sources", nargs="+", default=None,
                   help="the held-out set (default: the RL config's eval_sources)")
    p.add_argument("--samples", type=int, default=8, help="samples per held-out prompt at T 1 (sampled pass@1)")
    p.add_argument("--sft-lr", type=float, default=5e-4, help="learning rate of continued SFT, baseline (a)")
    p.add_argument("--rs-lr", type=float, default=1e-4,
                   help="learning rate of ReST, baseline (b) (1e-4: the best of 3e-5..2e-3 on the validation set)")
    p.add_argument("--jobs", type=int, default=2, help="arms trained at once (threads are split between them)")
    p.add_argument("--threads-total", type=int, default=os.cpu_count() or 2)
    p.add_argument("--quick", action="store_true", help="one seed, a shorter RL run, a quarter of the held-out set")
    p.add_argument("--quick-iterations", type=int, default=4)
    p.add_argument("--out", default="runs/bench_learning")
    p.add_argument("--fresh", action="store_true", help="discard finished arms in --out and start over")
    p.add_argument("--table", metavar="JSON", help="print a bench_learning.json as a markdown table and exit")
    a = p.parse_args()
    if a.table:
        print(markdown(json.loads(Path(a.table).read_text())))
        return
    if a.quick:
        a.seeds, a.out = a.seeds[:1], a.out.rstrip("/") + "-quick"
    if a.fresh and Path(a.out).exists():
        import shutil
        shutil.rmtree(a.out)
    result = Bench(a).run()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "bench_learning.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
