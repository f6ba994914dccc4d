"""Two CPU processes (gloo) under `accelerate launch` against one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def launch(n: int, *args: str, port: int, env: dict | None = None,
           config_file: str | None = None) -> subprocess.CompletedProcess:
    """``accelerate launch`` with ``n`` processes (a plain python run for n = 1), ``env`` added; with
    ``config_file`` (one of configs/accelerate/) the launch reads it, as a user's would."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           **(env or {})}
    if n == 1:
        cmd = [sys.executable, *args]
    elif config_file:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file, "--num_processes",
               str(n), "--mixed_precision", "no", "--main_process_port", str(port), *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port), *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    errors = [x for x in proc.stderr.splitlines() if "error" in x.lower() and "elastic" not in x]
    assert proc.returncode == 0, "\n".join(errors[:20]) + "\n---\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


LOSSES = ("kimi", "grpo", "rloo", "dpo")


@pytest.fixture(scope="module")
def one_process_updates(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("one") / "one.pt"
    launch(1, str(HERE / "dist_update_worker.py"), str(out), "--losses", *LOSSES, port=0)
    return torch.load(out)


@pytest.mark.slow
@pytest.mark.parametrize("sharding,split,port", [("none", "modulo", 29531), ("fsdp", "uneven", 29538),
                                                 ("fsdp", "empty", 29539)])
def test_two_process_update_equals_one_process(one_process_updates, sharding, split, port, tmp_path):
    """Same fixed global batch (6 prompts x 2 responses, mixed image/text), dealt by prompt over 2
    processes (``uneven``: 5 prompts and 1; ``empty``: 6 and none): 3 optimizer steps on micro-batches of
    whole groups give the same weights as 1 process, for every loss, with plain gradients summed by
    vlrl (``none``) and with FSDP2 shards reduced by the engine (``fsdp``). kimi also rescores one
    prompt's rows (the sampler's log-probs are missing there) on one process only."""
    launch(2, str(HERE / "dist_update_worker.py"), str(tmp_path / "two.pt"), "--sharding", sharding, "--split", split,
           "--losses", *LOSSES, port=port)
    one, two = one_process_updates, torch.load(tmp_path / "two.pt")
    assert one["world"] == 1 and two["world"] == 2
    for loss in LOSSES:
        a, b = one["results"][loss], two["results"][loss]
        assert a["steps"] == b["steps"] == 3, loss
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["entropy"] - b["entropy"]) < 1e-4, (loss, a, b)
        moved = max((a["params"][k] - one["init"][k]).abs().max().item() for k in a["params"])
        diff = max((a["params"][k] - b["params"][k]).abs().max().item() for k in a["params"])
        # Adam divides by sqrt(v): float-order differences of tiny gradients show up at ~1e-5 after 3 steps
        # (with eps 1e-8 up to 2.5e-4 on one CPU model, so the worker's Adam uses eps 1e-6)
        assert moved > 1e-2 and diff < 1e-4, (loss, moved, diff)


@pytest.mark.slow
def test_rl_stage_under_two_processes_gathers_every_trajectory(sft_tiny, tmp_path):
    """`vlrl rl` with 2 processes: each iteration counts exactly prompts x k trajectories (none lost or
    counted twice), and a resumed run continues from the checkpoint on 2 processes."""
    out = tmp_path / "rl"
    common = ["-m", "vlrl.cli", "rl", "--config", "configs/tiny/rl.yaml", f"init_from={sft_tiny}", f"output_dir={out}",
              "sources=[synth:shapes?n=30&seed=2&levels=1-2,synth:arithmetic?n=30&seed=2&levels=1]",
              "eval_sources=[]", "prompts_per_iteration=4", "rollout.k=4", "rollout.max_response_tokens=12",
              "minibatch_size=8", "save_every=1"]
    launch(2, *common, "iterations=2", port=29532)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["trajectories"] for r in rows] == [16, 16] and all(r["processes"] == 2 for r in rows)
    assert {"accuracy/image", "accuracy/text"} <= set(rows[-1])
    proc = launch(2, *common, "iterations=3", port=29533)
    assert "resuming from" in proc.stdout and len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_rl_stage_under_two_processes_with_empty_shards(sft_tiny, tmp_path):
    """Partial rollouts with a 1-token budget: in the first iteration no trajectory finishes on either
    process, so both shards are empty objects; the sync phase still runs its collectives, the update is
    skipped on both, and later iterations train on what finished."""
    out = tmp_path / "rl"
    launch(2, "-m", "vlrl.cli", "rl", "--config", "configs/tiny/rl.yaml", f"init_from={sft_tiny}", f"output_dir={out}",
           "sources=[synth:shapes?n=30&seed=2&levels=1-2,synth:arithmetic?n=30&seed=2&levels=1]", "eval_sources=[]",
           "prompts_per_iteration=2", "rollout.k=2", "rollout.budget=1", "rollout.max_response_tokens=3",
           "rollout.max_age=4", "minibatch_size=4", "save_every=0", "iterations=4", port=29534)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["trajectories"] == 0 and rows[0]["buffer"] == 4 and "loss" not in rows[0]
    assert any(r["trajectories"] > 0 and "loss" in r for r in rows[1:])


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sharded_rl_run_resumes_on_one_process_as_if_uninterrupted(sft_tiny, tmp_path):
    """FSDP2 over 2 processes (launched with configs/accelerate/fsdp.yaml, sharding: auto) for 3
    iterations with partial rollouts, one optimizer across iterations and a checkpoint each iteration,
    against the same run as a kill after iteration 3 was logged but before its checkpoint leaves it (the
    step-3 checkpoint and the final weights removed), resumed on 1 process. Iteration 3 draws the same trajectories (keyed sampling: rewards and lengths equal), and
    the final weights agree within 1e-4 (the 2-process gradient sums differ from 1 process in float
    order, and Adam's division by sqrt(v) magnifies that to ~1e-5). Under FSDP the sampler's log-probs
    equal a rescoring by the sharded model within 1e-4, and the optimizer state is saved by name."""
    def cmd(out: Path) -> list[str]:
        return ["-m", "vlrl.cli", "rl", "--config", "configs/tiny/rl.yaml", f"init_from={sft_tiny}",
                f"output_dir={out}", "sources=[synth:shapes?n=30&seed=2&levels=1-2,synth:arithmetic?n=30&seed=2&levels=1]",
                "eval_sources=[]", "prompts_per_iteration=4", "rollout.k=4", "rollout.max_response_tokens=12",
                "rollout.budget=6", "minibatch_size=16", "optim.lr=1e-3", "reference=recompute", "save_every=1",
                "iterations=3", "export_llava=false", "sampling.strategy=uniform",
                # a sharded update runs every row (skip_inert needs the same forwards on every process);
                # the 1-process resume must do the same math
                "skip_inert_rows=false"]

    a, b = tmp_path / "a", tmp_path / "b"
    proc = launch(2, *cmd(a), port=29540, config_file="configs/accelerate/fsdp.yaml")
    assert "FSDP2: parameters, gradients and optimizer state sharded over 2 processes" in proc.stdout
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step-3")
    (b / "model.safetensors").unlink()
    launch(1, *cmd(b), port=0)
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in rb] == [1, 2, 3] and [r["processes"] for r in ra] == [2, 2, 2]
    assert rb[2]["processes"] == 1 and rb[2]["trajectories"] == ra[2]["trajectories"] > 0
    for key in ("reward", "length_mean", "buffer"):
        assert abs(ra[2][key] - rb[2][key]) < 1e-6, key
    assert all(r["sampling_logprob_diff_max"] < 1e-4 for r in ra if "loss" in r) and "loss" in ra[2]
    init, wa, wb = _weights(Path(sft_tiny)), _weights(a), _weights(b)
    moved = max((wa[k] - init[k]).abs().max().item() for k in wa)
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert moved > 1e-3 and diff < 1e-4, (moved, diff)
    opt = torch.load(a / "checkpoints" / "step-3" / "trainer.pt", weights_only=False)["optimizer"]
    assert opt["state"] and all(isinstance(k, str) for k in opt["state"])


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["align", "warmup"])
def test_supervised_stage_two_processes_equal_one(stage, sft_tiny, tmp_path):
    """3 optimizer steps of a global batch of 8 (2 micro-batches of accumulation), mixed image and text
    samples of different lengths: 2 processes (4 + 4 rows) end with the weights of 1 process (8 rows),
    because the loss is the token mean over the global batch, not a mean of per-process means."""
    sources = ("[synth:shapes?n=40&seed=1&style=long,synth:arithmetic?n=40&seed=1&style=long]" if stage == "warmup"
               else "[synth:shapes?n=40&seed=1,synth:text_rendered?n=40&seed=1]")
    common = ["-m", "vlrl.cli", stage, "--config", f"configs/tiny/{stage}.yaml", f"data.sources={sources}",
              "phases=[{steps: 3}]", "batch_size=8", "optim.grad_accum=2", "optim.lr=1e-2", "optim.warmup_steps=0",
              "trackers=[]", "save_every=0"]
    common += [f"init_from={sft_tiny}", "eval_sources=[]"] if stage == "warmup" else ["model.tokenizer.build.n_per_task=50"]
    launch(1, *common, f"output_dir={tmp_path / 'one'}", port=0)
    launch(2, *common, f"output_dir={tmp_path / 'two'}", port=29534 if stage == "align" else 29535)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    logs = [[json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert logs[0] and len(logs[0]) == len(logs[1]) and all(abs(a - b) < 1e-5 for a, b in zip(*logs)), logs
    if stage == "warmup":
        start = _weights(Path(sft_tiny))
        moved = max((one[k] - start[k]).abs().max().item() for k in one)
        assert moved > 1e-2, moved
    diff = max((one[k] - two[k]).abs().max().item() for k in one)
    assert diff < 1e-4, diff


@pytest.mark.slow
def test_curate_two_processes_probe_every_prompt_once(sft_tiny, tmp_path):
    """Each process probes its shard; together they probe every prompt exactly once (the per-rank cache
    files are disjoint and cover the pool), and one process re-running on the same directory finds
    every probe cached (generates nothing) and reaches the same funnel and selection."""
    out = tmp_path / "curate"
    common = ["-m", "vlrl.cli", "curate", "--config", "configs/tiny/curate.yaml", f"model={sft_tiny}",
              f"output_dir={out}", "sources=[synth:curation_pool?n=60&seed=5]", "hack.probe.n=2",
              "difficulty.probe.n=2", "difficulty.probe.max_new_tokens=8", "selection.target=12"]
    launch(2, *common, port=29536)
    two = json.loads((out / "report.json").read_text())
    funnel = dict(two["funnel"])
    # the guess probe sees every prompt that passed the rule filters, the solve probe every one that
    # passed the easy-to-hack filter: one cache line per prompt probed, split over the two ranks
    for mode, probed in (("guess", funnel["rule filters"]), ("solve", funnel["easy-to-hack"])):
        lines = [len((out / "cache" / f"{mode}.rank{r}.jsonl").read_text().splitlines()) for r in (0, 1)]
        assert min(lines) > 0 and sum(lines) == probed, (mode, lines, probed)
    sizes = {p.name: p.stat().st_size for p in (out / "cache").iterdir()}
    launch(1, *common, port=0)
    assert {p.name: p.stat().st_size for p in (out / "cache").iterdir()} == sizes
    one = json.loads((out / "report.json").read_text())
    assert one["funnel"] == two["funnel"] and one["distribution"] == two["distribution"]


@pytest.mark.slow
@pytest.mark.parametrize("sharding,port", [("none", 29537), ("fsdp", 29541)])
def test_long2short_two_processes_run_every_method(sft_tiny, saved_tiny, tmp_path, sharding, port):
    """`vlrl long2short` with 2 processes: sampling is sharded and gathered back in prompt order (every
    prompt exactly once, n responses each), every method trains and saves a loadable model, and the report
    lists every model. Under an FSDP launch, DPO and RL update a sharded policy."""
    from vlrl.data import load_samples
    from vlrl.models import load_pretrained

    out = tmp_path / "l2s"
    sources = "[synth:shapes?n=6&seed=4&levels=1,synth:arithmetic?n=5&seed=4&levels=1]"
    proc = launch(2, "-m", "vlrl.cli", "long2short", "--config", "configs/tiny/long2short.yaml", f"long_model={sft_tiny}",
           f"short_model={saved_tiny}", f"output_dir={out}", f"sources={sources}",
           "eval_sources=[synth:shapes?n=4&seed=999&levels=1,synth:arithmetic?n=2&seed=999&levels=1]",
           "eval_max_new_tokens=12", "sample.n=8", "sample.max_new_tokens=12", "shortest_rs.steps=2",
           "shortest_rs.sample_from=long",
           "shortest_rs.batch_size=4", "dpo.epochs=1", "dpo.ratio=1.0",
           "rl.overrides=[iterations=1,prompts_per_iteration=2,rollout.k=2,rollout.max_response_tokens=8,"
           "'sources=[synth:arithmetic?n=10&seed=2&levels=1]']", port=port,
           env={"ACCELERATE_USE_FSDP": "true"} if sharding == "fsdp" else None)
    sharded = ("FSDP2 over 2 processes" in proc.stdout, "FSDP2: parameters" in proc.stdout)
    assert sharded == ((True, True) if sharding == "fsdp" else (False, False))
    rows = [json.loads(x) for x in (out / "samples" / "long.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [s.id for s in load_samples(sources.strip("[]").split(",")[0])] + \
        [s.id for s in load_samples(sources.strip("[]").split(",")[1])]
    assert all(len(r["responses"]) == 8 for r in rows)
    for method in ("merge", "shortest_rs", "dpo", "rl"):
        load_pretrained(out / method)
    table = json.loads((out / "report.json").read_text())["table"]
    assert set(table["overall"]) == {"long", "short", "merge", "shortest_rs", "dpo", "rl"}


@pytest.mark.slow
def test_fsdp_halves_each_process_update_state(tmp_path):
    """scripts/bench_sharding.py on the tiny model: under FSDP2 on 2 processes the busiest process holds
    about half the parameter, gradient and Adam bytes of a data-parallel process (the shards of dim 0
    are padded to equal size, so not exactly half), and gathers the whole weights only for rollouts."""
    proc = subprocess.run([sys.executable, "scripts/bench_sharding.py", "--sizes", "tiny", "--port", "29542"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    arms = json.loads(proc.stdout)["tiny"]["arms"]
    one, dp, fs = arms["1 process"], arms["2 processes, data parallel"], arms["2 processes, fsdp"]
    assert dp["update_state_mb"] == one["update_state_mb"] and dp["rollout_copy_mb"] == 0
    for key in ("parameter_mb", "gradient_mb", "optimizer_mb"):
        assert 0.45 <= fs[key] / dp[key] <= 0.55, key
    assert fs["rollout_copy_mb"] == dp["parameter_mb"]


@pytest.mark.slow
def test_sharded_rl_in_bf16_keeps_fp32_shards(sft_tiny, tmp_path):
    """FSDP2 with the engine's mixed-precision policy (bf16 all-gathers, fp32 gradient reductions) and
    the model's autocast: the sharded scorer's log-probs stay within bf16's tolerance (0.1 per token)
    of the whole-weight sampler's, the policy moves, and the saved weights are fp32."""
    out = tmp_path / "rl"
    proc = launch(2, "-m", "vlrl.cli", "rl", "--config", "configs/tiny/rl.yaml", f"init_from={sft_tiny}",
                  f"output_dir={out}", "sources=[synth:shapes?n=30&seed=2&levels=1-2,synth:arithmetic?n=30&seed=2&levels=1]",
                  "eval_sources=[]", "prompts_per_iteration=4", "rollout.k=4", "rollout.max_response_tokens=12",
                  "minibatch_size=16", "optim.lr=1e-3", "reference=recompute", "iterations=2", "save_every=0",
                  "precision=bf16", "length_penalty.weight=0.5", "length_penalty.warmup_iterations=0",
                  "export_llava=false", port=29543, env={"ACCELERATE_USE_FSDP": "true"})
    assert "FSDP2: parameters" in proc.stdout and "bf16 autocast" in proc.stdout
    rows = [r for r in _rows(out) if "loss" in r]
    assert rows and all(0 < r["sampling_logprob_diff_max"] < 0.1 for r in rows)
    w, init = _weights(out), _weights(Path(sft_tiny))
    assert all(t.dtype == torch.float32 for t in w.values())
    assert max((w[k] - init[k]).abs().max().item() for k in w) > 1e-4
