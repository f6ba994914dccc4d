"""The pure parts of the learning benchmarks: source rewriting and the summary JSON, by hand."""

import argparse
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_with_n_rewrites_only_the_sample_count():
    b = _script("bench_learning")
    assert b.with_n("synth:shape_math?n=3000&seed=2", 160) == "synth:shape_math?n=160&seed=2"
    assert b.with_n("synth:arithmetic?seed=2&n=7&levels=1-3", 5) == "synth:arithmetic?seed=2&n=5&levels=1-3"


def test_summary_gives_mean_spread_and_rl_gain_in_points():
    b = _script("bench_learning")
    a = argparse.Namespace(seeds=[0, 1], quick=False, warmup="w", rl_config="c", rl_override=[], samples=8)
    results = {"warmup": [{"sampled/image": 0.25, "sampled/text": 0.40, "wall_s": 0.0}],
               "rl": [{"sampled/image": 0.35, "sampled/text": 0.42, "wall_s": 100.0},
                      {"sampled/image": 0.31, "sampled/text": 0.48, "wall_s": 120.0}]}
    out = b.summarise(results, a)
    # image: +10 and +6 points -> mean 8, population std 2; text: +2 and +8 -> 5 and 3
    assert out["rl_gain/image"] == 8.0 and out["rl_gain_std/image"] == 2.0
    assert out["rl_gain/text"] == 5.0 and out["rl_gain_std/text"] == 3.0
    assert out["arms"]["rl"]["wall_s"] == {"mean": 110.0, "std": 10.0, "n": 2}
    assert "rl_gain/text_rendered" not in out


def test_trl_comparison_agrees_only_within_the_seed_spreads():
    c = _script("compare_trl_learning")
    same = c.summarise({"vlrl": [[0.2, 0.4], [0.2, 0.6]], "trl": [[0.3, 0.5], [0.1, 0.5]]}, window=1)
    # final windows: vlrl 0.4 / 0.6 (mean 0.5, std 0.1), trl 0.5 / 0.5 (mean 0.5, std 0): gap 0
    assert same["vlrl"]["final_window"] == {"mean": 0.5, "std": 0.1} and same["agree_within_spread"]
    apart = c.summarise({"vlrl": [[0.2, 0.4], [0.2, 0.6]], "trl": [[0.3, 0.9], [0.1, 0.9]]}, window=1)
    assert apart["final_window_gap"] == 0.4 and not apart["agree_within_spread"]  # 0.4 > 0.1 + 0


def test_rl_is_compared_with_each_baseline_seed_by_seed():
    b = _script("bench_learning")
    a = argparse.Namespace(seeds=[0, 1, 2], quick=False, warmup="w", rl_config="c", rl_override=[], samples=8)
    results = {"warmup": [{"sampled/image": 0.25, "wall_s": 0.0}],
               "rl": [{"sampled/image": 0.40}, {"sampled/image": 0.44}, {"sampled/image": 0.39}],
               "rs": [{"sampled/image": 0.38}, {"sampled/image": 0.38}, {"sampled/image": 0.40}],
               "sft": [{"sampled/image": 0.30}]}  # one seed of three: not paired
    out = b.summarise(results, a)
    # rl - rs per seed: +2, +6, -1 points -> mean 7/3 = 2.3333;
    # deviations from 7/3: -1/3, 11/3, -10/3 -> squares 1/9 + 121/9 + 100/9 = 222/9, / 3 = 8.2222, sqrt 2.8674
    assert out["rl_minus_rs/image"] == {"mean": 2.3333, "std": 2.8674, "n": 3, "rl_ahead": 2}
    assert not any(k.startswith("rl_minus_sft") for k in out)
    assert b.markdown(out).splitlines()[-1] == ("RL minus each baseline, paired by seed, sampled points: "
                                               "rs image +2.3 ± 2.9 (ahead on 2 of 3)")


def test_markdown_table_of_the_summary():
    b = _script("bench_learning")
    a = argparse.Namespace(seeds=[0], quick=True, warmup="w", rl_config="c", rl_override=[], samples=8)
    out = b.summarise({"warmup": [{"sampled/image": 0.25, "wall_s": 0.0}],
                       "rl": [{"sampled/image": 0.35, "wall_s": 100.0}]}, a)
    md = b.markdown(out).splitlines()
    assert md[0] == "| arm | seeds | sampled/image | wall s |"
    assert md[3] == "| rl | 1 | 0.350 ± 0.000 | 100 |"
    assert md[-1] == "RL gain over the warm-up, sampled pass@1 points: image +10.0 ± 0.0"


def test_rs_arm_draws_as_many_prompts_and_samples_as_the_overridden_rl_arm():
    b = _script("bench_learning")
    a = argparse.Namespace(rl_config="configs/tiny/rl.yaml", eval_sources=["synth:arithmetic?n=8&seed=9"], quick=False,
                           rl_override=["iterations=5", "iterations=20", "rollout.k=6"], quick_iterations=2, samples=8,
                           sft_lr=5e-4, rs_lr=1e-4, out="o")
    bench = b.Bench(a)
    assert bench.rl_setting("iterations") == "20"  # the last override wins, as on the vlrl command line
    cmd = bench.command("rs", 0, Path("w"), Path("d"), minutes=1.0)
    sources = next(c for c in cmd if c.startswith("sources="))
    per_source = 20 * int(bench.rl_setting("prompts_per_iteration")) // len(bench.rl_cfg["sources"])
    assert sources.count(f"n={per_source}&") == len(bench.rl_cfg["sources"])
    assert "shortest_rs.lr=0.0001" in cmd  # ReST has its own lr, not continued SFT's
    assert "sample.n=6" in cmd  # as many responses per prompt as the RL arm, not the evaluation's 8
    a.rl_override = []  # nested settings come from the config when not overridden
    config_k = b.Bench(a).rl_cfg["rollout"]["k"]
    assert b.Bench(a).rl_setting("rollout.k") == str(config_k)
    assert f"sample.n={config_k}" in b.Bench(a).command("rs", 0, Path("w"), Path("d"), minutes=1.0)


def test_speed_comparison_drops_the_warm_up_step_and_takes_medians():
    b = _script("bench_vs_trl")
    # steps 2..4 timed (the first is warm-up): step medians 0.5, generation 0.3 -> 8 / 0.5 = 16 completions/s
    steps = [{"step": 9.0, "generate": 9.0}, {"step": 0.4, "generate": 0.2}, {"step": 0.5, "generate": 0.3},
             {"step": 0.6, "generate": 0.4}]
    s = b.summary(steps, completions=8, tokens=256)
    assert s["first_step_s"] == 9.0 and s["step_s"] == 0.5 and s["completions_per_s"] == 16.0 and s["generated_tokens_per_s"] == 512.0
    assert s["split_s"] == {"generate_and_reward": 0.3, "update": 0.2}
    run = lambda c, rss: {"first_step_s": 1.0, "step_s": 8 / c, "completions_per_s": c, "generated_tokens_per_s": 32 * c,
                          "peak_rss_mb": rss, "split_s": {"generate_and_reward": 0.1, "update": 0.1}}
    out = b.compare({"vlrl": [run(30, 900), run(40, 1000), run(35, 950)], "trl": [run(20, 1000), run(10, 1200)]})
    # medians: vlrl 35 completions/s and 950 MB, trl 15 and 1100 -> ratio 35 / 15 = 2.33, rss 950 / 1100 = 0.86
    assert out["vlrl"]["completions_per_s"] == 35 and out["trl"]["completions_per_s"] == 15
    assert out["ratio"] == 2.33 and out["rss_ratio"] == 0.86
    assert out["vlrl"]["completions_per_s_runs"] == [30, 40, 35]


def test_evaluations_are_cached_per_held_out_set_and_sample_count():
    b = _script("bench_learning")

    def bench(sources, samples=8):
        return b.Bench(argparse.Namespace(rl_config="configs/tiny/rl.yaml", eval_sources=sources, quick=False,
                                          rl_override=[], samples=samples, out="o"))

    val, test = ["synth:arithmetic?n=8&seed=998"], ["synth:arithmetic?n=8&seed=999"]
    m = Path("model")
    assert bench(val).eval_dir(m, "sampled") == bench(list(val)).eval_dir(m, "sampled")
    assert bench(val).eval_dir(m, "sampled") != bench(test).eval_dir(m, "sampled")
    assert bench(val).eval_dir(m, "sampled") != bench(val, samples=4).eval_dir(m, "sampled")
    assert bench(val).eval_dir(m, "greedy").parent == m / "bench_eval"


def test_bench_generate_compares_decoders_and_caches_in_one_process():
    import json
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "scripts/bench_generate.py"), "--batch", "1", "--samples", "2",
           "--max-new-tokens", "3", "--repeats", "1", "--threads", "1", "--decoder", "compare", "--kv-cache", "compare"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    d = json.loads(out[out.index("{"):])
    assert set(d["decoder_compare"]) == {"llama_s", "transformers_s", "speedup"}
    assert set(d["kv_cache_compare"]) == {"inplace_s", "dynamic_s", "speedup"}
    assert d["time_split"]["llm"] > 0  # the decoders' prefill and steps are clocked, whichever runs


def test_bench_rl_splits_a_step_and_times_partial_rollouts():
    import json
    import subprocess
    import sys

    cmd = [sys.executable, str(ROOT / "scripts/bench_rl.py"), "--steps", "1", "--max-tokens", "8", "--threads", "1",
           "--lt-iterations", "2", "--lt-prompts", "1", "--lt-max-tokens", "24", "--lt-budget", "8"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    d = json.loads(out[out.index("{"):])
    assert set(d["time_split"]) == {"rollout", "reward", "train"}
    assert 0 < d["forward_share_of_rollout"] <= 1  # the decoders' steps are clocked
    assert d["partial_rollouts"]["partial"]["budget"] == 8
