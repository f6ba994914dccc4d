"""The RL stage on the tiny config: runs, changes the parameters, logs, and resumes exactly."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vlrl.config import load_config
from vlrl.stages.rl import RLConfig, main

ROOT = Path(__file__).resolve().parents[2]
ROOT_CFG = "configs/tiny/rl.yaml"


def rl_cfg(model_dir, out, *extra):
    return load_config(RLConfig, ROOT_CFG, [
        f"init_from={model_dir}", f"output_dir={out}", "sources=[synth:shapes?n=30&seed=2&levels=1-2,synth:arithmetic?n=30&seed=2&levels=1]",
        "eval_sources=[]", "prompts_per_iteration=3", "rollout.k=4", "rollout.max_response_tokens=12",
        "minibatch_size=8", "optim.lr=1e-3", *extra])


def rows(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["kimi", "grpo", "rloo"])
def test_rl_iterations_run_and_change_the_parameters(sft_tiny, tmp_path, loss):
    out = main(rl_cfg(sft_tiny, tmp_path, "iterations=3", f"loss.name={loss}",
                      "rollout.budget=5", "length_penalty.weight=0.5"))
    before, after = load_file(str(sft_tiny / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    r = rows(out)
    assert len(r) == 3 and (out / "curves.png").exists()
    for key in ("reward", "accuracy", "length_mean", "length_p95", "entropy", "grad_norm", "zero_variance_groups",
                "buffer", "tokens_per_s", "time_rollout", "time_reward", "time_train", "accuracy/image",
                "sampling_logprob_diff_max"):
        assert key in r[-1], key
    # the loss's starting log-probs are the sampler's (partial rollouts included): on-policy to float error
    assert all(x["sampling_logprob_diff_max"] < 1e-3 for x in r if "sampling_logprob_diff_max" in x)


def test_train_freezes_the_modules_it_leaves_out(sft_tiny, tmp_path):
    """train=[projector, llm]: the encoder's weights are bit-identical after RL, the LLM's have moved."""
    # every reward of this tiny model is 0: skip_inert_rows would skip every row and move nothing
    out = main(rl_cfg(sft_tiny, tmp_path, "iterations=2", "train=[projector,llm]", "skip_inert_rows=false"))
    before, after = load_file(str(sft_tiny / "model.safetensors")), load_file(str(out / "model.safetensors"))
    enc = [k for k in before if k.startswith("encoder.")]
    llm = [k for k in before if k.startswith("llm.")]
    assert enc and llm
    assert all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in llm)
    with pytest.raises(ValueError, match="train: unknown module"):
        main(rl_cfg(sft_tiny, tmp_path / "bad", "iterations=1", "train=[vision]"))


def test_fresh_prompt_accuracy_and_no_repeat(sft_tiny, tmp_path):
    """accuracy_fresh counts only prompts drawn for the first time: 3 + 3 draws from 4 prompts must repeat
    one in the second iteration; with no_repeat on 6 prompts every draw is a first draw."""
    pool = "sources=[synth:arithmetic?n=4&seed=2&levels=1]"
    r = rows(main(rl_cfg(sft_tiny, tmp_path / "a", "iterations=2", pool, "save_every=0")))
    assert r[0]["fresh_fraction"] == 1.0 and r[0]["accuracy_fresh"] == r[0]["accuracy"]
    assert r[1].get("fresh_fraction", 0.0) < 1.0
    pool = "sources=[synth:arithmetic?n=6&seed=2&levels=1]"
    r = rows(main(rl_cfg(sft_tiny, tmp_path / "b", "iterations=2", pool, "sampling.no_repeat=true", "save_every=0")))
    assert all(x["fresh_fraction"] == 1.0 and x["accuracy_fresh"] == x["accuracy"] for x in r)


def test_never_drawn_script_scores_the_prompts_the_run_did_not_draw(sft_tiny, tmp_path):
    """scripts/rl_never_drawn.py reads the drawn mask from the last checkpoint: 2 draws of 3 from 8 prompts
    leave 8 - 3 - (new prompts in the 2nd draw) never drawn; a run without checkpoints is a clear error."""
    spec = importlib.util.spec_from_file_location("rl_never_drawn", ROOT / "scripts" / "rl_never_drawn.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pool = "sources=[synth:arithmetic?n=8&seed=2&levels=1]"
    out = main(rl_cfg(sft_tiny, tmp_path / "a", "iterations=2", pool, "save_every=1", "eval_max_new_tokens=8"))
    new_second = round(3 * rows(out)[1].get("fresh_fraction", 0.0))
    res = script.main([str(out), "--samples", "2", "--max-new-tokens", "8"])
    assert res["prompts"] == {"text": 8 - 3 - new_second}
    assert 0.0 <= res["harness"]["text"] <= 1.0 and 0.0 <= res["rollout"]["text"] <= 1.0
    bare = main(rl_cfg(sft_tiny, tmp_path / "b", "iterations=1", pool, "save_every=0"))
    with pytest.raises(SystemExit, match="has no checkpoint"):
        script.main([str(bare)])


@pytest.mark.slow
def test_first_step_of_an_iteration_has_zero_log_ratio(sft_tiny, tmp_path):
    """One gradient step per iteration: the loss sees pi_theta == pi_theta_i, so the log-ratio is exactly 0
    against a recomputed reference, and 0 to float error against the sampler's log-probs (the default)."""
    one_step = ("iterations=2", "steps_per_iteration=1", "minibatch_size=1000", "loss.name=kimi",
                "skip_inert_rows=false")  # all-zero rewards here: skipping would leave no row to measure
    out = main(rl_cfg(sft_tiny, tmp_path / "recompute", *one_step, "reference=recompute"))
    assert all(r["log_ratio_abs_max"] == 0.0 for r in rows(out))
    out = main(rl_cfg(sft_tiny, tmp_path / "sampler", *one_step))
    assert all(r["log_ratio_abs_max"] < 1e-4 and r["reference_rows_scored"] == 0 for r in rows(out))


def test_the_sampler_reference_agrees_with_a_recomputed_one(sft_tiny, tmp_path):
    """Partial rollouts (budget 5 of 12 tokens) with older segments in the loss: "recompute" scores every
    row and finds the sampler's log-probs within 1e-4 of its own; "sampler" rescores only the rows that
    hold a segment an older policy wrote, and none when those segments are masked out of the loss, or
    when the rows are inert under ``skip_inert_rows`` (here every reward is 0: every row is inert)."""
    partial = ("iterations=3", "rollout.budget=5", "rollout.k=2", "skip_inert_rows=false")
    r = rows(main(rl_cfg(sft_tiny, tmp_path / "recompute", *partial, "mask_old_segments=false",
                         "reference=recompute")))
    assert all(x["sampling_logprob_diff_max"] < 1e-4 and x["reference_rows_scored"] > 0 for x in r)
    r = rows(main(rl_cfg(sft_tiny, tmp_path / "sampler", *partial, "mask_old_segments=false")))
    assert r[0]["reference_rows_scored"] == 0 and any(x.get("reference_rows_scored", 0) > 0 for x in r[1:])
    r = rows(main(rl_cfg(sft_tiny, tmp_path / "masked", *partial, "mask_old_segments=true")))
    assert all(x.get("reference_rows_scored", 0) == 0 for x in r) and any("loss" in x for x in r)
    r = rows(main(rl_cfg(sft_tiny, tmp_path / "inert", *partial, "mask_old_segments=false", "skip_inert_rows=true")))
    assert all(x["reward"] == 0 for x in r if "reward" in x)
    assert all(x.get("reference_rows_scored", 0) == 0 for x in r) and any(x.get("inert_rows_skipped", 0) for x in r)
    with pytest.raises(ValueError, match="reference must be 'sampler' or 'recompute'"):
        main(rl_cfg(sft_tiny, tmp_path / "bad", "reference=cached"))


def test_eval_at_start_logs_the_starting_model_as_iteration_0(sft_tiny, tmp_path):
    ev = "eval_sources=[synth:shapes?n=3&seed=999&levels=1,synth:arithmetic?n=3&seed=999&levels=1]"
    out = main(rl_cfg(sft_tiny, tmp_path, "iterations=1", "eval_every=1", "eval_at_start=true", ev,
                      "eval_max_new_tokens=8"))
    r = rows(out)
    assert [x["step"] for x in r] == [0, 1]
    assert "eval/overall" in r[0] and "reward" not in r[0] and "eval/overall" in r[1] and "reward" in r[1]
    assert (out / "eval" / "iter-0" / "eval.json").is_file() and (out / "eval" / "iter-1" / "eval.json").is_file()



def test_iteration_0_reuses_the_starting_models_own_greedy_evaluation(sft_tiny, tmp_path, monkeypatch):
    """A warm-up that evaluated its final model with RL's held-out settings: RL's iteration 0 copies that
    greedy report (no second evaluation; the sampled one is still made), and evaluates afresh when the
    settings differ (here the token limit)."""
    from tests.conftest import evaluated_stage
    from vlrl.eval import heldout
    from vlrl.stages import rl as rl_stage

    src = ["synth:shapes?n=3&seed=999&levels=1", "synth:arithmetic?n=3&seed=999&levels=1"]
    warm = evaluated_stage(sft_tiny, tmp_path / "warm", src, 8)
    calls = []
    real = heldout.evaluate_held_out
    monkeypatch.setattr(rl_stage, "evaluate_held_out", lambda *a, **k: calls.append((a[5], k["n"])) or real(*a, **k))
    ev = (f"eval_sources=[{','.join(src)}]", "eval_at_start=true", "eval_every=1", "eval_samples=2", "iterations=1")
    out = main(rl_cfg(warm, tmp_path / "reused", *ev, "eval_max_new_tokens=8"))
    assert calls == [("RL iteration 0", 2), ("RL iteration 1", 1), ("RL iteration 1", 2)]
    assert (out / "eval" / "iter-0" / "records.jsonl").read_text() == (warm / "eval" / "records.jsonl").read_text()
    calls.clear()
    main(rl_cfg(warm, tmp_path / "fresh", *ev, "eval_max_new_tokens=9"))
    assert calls[0] == ("RL iteration 0", 1)

@pytest.fixture
def even_length_reward():
    """A reward the untrained tiny model earns on about half its responses (even character count), so
    that groups hold correct responses; removed from the global registry afterwards."""
    from vlrl.rewards import REWARDS, RewardResult

    REWARDS.add("even_length", lambda **_: lambda response, sample: RewardResult(float(len(response) % 2 == 0)),
                origin="tests")
    yield "reward.name=even_length"
    REWARDS._builders.pop("even_length", None)
    REWARDS._origin.pop("even_length", None)


def test_replay_mixes_earlier_groups_into_the_update_and_resumes_exactly(sft_tiny, tmp_path, even_length_reward):
    """replay.groups=2: from the second iteration on, each update also trains on earlier iterations'
    groups (their rows counted in ``replayed_rows``); a run resumed from iteration 2's checkpoint
    (which holds the stored groups) ends with the same metrics and weights."""
    rep = ("replay.groups=2", "replay.max_age=2", "mask_old_segments=false", even_length_reward, "save_every=2",
           "rollout.budget=5")
    a = main(rl_cfg(sft_tiny, tmp_path / "a", "iterations=4", *rep))
    ra = rows(a)
    assert ra[0]["replayed_rows"] == 0 and all(r["replayed_rows"] >= 2 for r in ra[1:])
    main(rl_cfg(sft_tiny, tmp_path / "b", "iterations=2", *rep))
    rb = rows(main(rl_cfg(sft_tiny, tmp_path / "b", "iterations=4", *rep)))
    keys = ("reward", "loss", "buffer", "replayed_rows", "grad_norm")
    assert [[r.get(k) for k in keys] for r in ra[2:]] == [[r.get(k) for k in keys] for r in rb[2:]]
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="mask_old_segments=false"):
        main(rl_cfg(sft_tiny, tmp_path / "c", "replay.groups=2", "mask_old_segments=true"))


@pytest.mark.slow
def test_rl_resumes_exactly(sft_tiny, tmp_path):
    a = main(rl_cfg(sft_tiny, tmp_path / "a", "iterations=4", "save_every=2", "rollout.budget=5"))
    main(rl_cfg(sft_tiny, tmp_path / "b", "iterations=2", "save_every=2", "rollout.budget=5"))
    b = main(rl_cfg(sft_tiny, tmp_path / "b", "iterations=4", "save_every=2", "rollout.budget=5"))
    ra, rb = rows(a), rows(b)
    keys = ("reward", "loss", "buffer", "length_mean")
    assert [[r.get(k) for k in keys] for r in ra[2:]] == [[r.get(k) for k in keys] for r in rb[2:]]
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("loss", ["kimi", "grpo", "rloo"])
def test_an_update_moves_probability_toward_the_rewarded_responses(tiny, loss):
    """Direction check of the whole update path (scoring batch -> reference -> loss -> optimizer): 6 mixed
    image / text prompts, each with one rewarded and one unrewarded response (4 rows per group, shuffled
    so rows of a group are not adjacent). After 2 steps the rewarded response of *every* prompt gained
    sequence log-probability relative to its unrewarded one; with the rewards swapped, the opposite."""
    import copy

    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.config import OptimConfig
    from vlrl.data.synth import generate
    from vlrl.rollout.buffer import Trajectory
    from vlrl.rollout.scoring import scoring_batch
    from vlrl.training import build_optimizer

    base, proc = tiny
    samples = generate("shapes", 3, seed=7) + generate("arithmetic", 3, seed=7)
    trajs, group, good = [], [], []
    for p, s in enumerate(samples):
        for j, text in enumerate([f"Answer: {s.answer}", f"So it is {int(s.answer) + 3}."] * 2):
            trajs.append(Trajectory(s, finish="stop"))
            trajs[-1].add_segment(proc.tokenize(text) + [proc.eos_token_id], 0)
            group.append(p)
            good.append(j % 2 == 0)
    order = torch.randperm(len(trajs), generator=torch.Generator().manual_seed(0)).tolist()
    trajs, group, good = [trajs[i] for i in order], [group[i] for i in order], [good[i] for i in order]
    batch = scoring_batch(proc, trajs, 0, True)

    def seq_logp(model) -> torch.Tensor:
        with torch.no_grad():
            return model.response_logprobs(batch)[0].sum(-1)

    def gain(reward_good: float) -> torch.Tensor:
        model = copy.deepcopy(base)
        before = seq_logp(model)
        rewards = torch.tensor([reward_good if g else 1.0 - reward_good for g in good])
        opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-3, weight_decay=0.0))
        policy_update(model, batch, rewards, torch.tensor(group), LOSSES.get(loss), {}, opt,
                      UpdateConfig(passes=2, minibatch_size=len(trajs), micro_batch_size=8, grad_clip=1.0))
        delta = seq_logp(model) - before  # (B,)
        g = torch.tensor(group)
        return torch.stack([delta[(g == p) & torch.tensor(good)].mean() - delta[(g == p) & ~torch.tensor(good)].mean()
                            for p in range(len(samples))])  # per prompt: gain of the good minus the bad response

    assert (gain(1.0) > 0).all() and (gain(0.0) < 0).all()


def test_eval_samples_adds_sampled_pass_at_1_next_to_greedy(sft_tiny, tmp_path):
    """eval_samples=3: each held-out prompt also gets 3 responses at the rollout temperature; the logged
    eval_sampled/overall is the mean correctness over all of them, the greedy eval/ keys stay as they are."""
    import json

    ev = "eval_sources=[synth:shapes?n=3&seed=999&levels=1,synth:arithmetic?n=3&seed=999&levels=1]"
    out = main(rl_cfg(sft_tiny, tmp_path, "iterations=1", "eval_every=1", "eval_samples=3", ev, "eval_max_new_tokens=8"))
    r = rows(out)[-1]
    records = [json.loads(x) for x in (out / "eval" / "iter-1" / "sampled" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(x["responses"]) == 3 for x in records)
    greedy = [json.loads(x) for x in (out / "eval" / "iter-1" / "records.jsonl").read_text().splitlines()]
    assert all(len(x["responses"]) == 1 for x in greedy)
    correct = [c for x in records for c in x["correct"]]
    assert abs(r["eval_sampled/overall"] - sum(correct) / len(correct)) < 1e-9
    assert "eval/overall" in r and "eval_sampled/image" in r and "eval_sampled/text" in r


def test_target_kl_stops_the_iteration_once_the_policy_moved_that_far(tiny):
    """The trust region: at a large lr, with target_kl tiny, the update takes its first step (the KL to
    pi_theta_i is exactly 0 before it) and stops at the next minibatch; without it, every step is taken.
    The KL it reports is >= the target when it stopped."""
    import copy

    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.config import OptimConfig
    from vlrl.data.synth import generate
    from vlrl.rollout.buffer import Trajectory
    from vlrl.rollout.scoring import scoring_batch
    from vlrl.training import build_optimizer

    base, proc = tiny
    samples = generate("shapes", 2, seed=7) + generate("arithmetic", 2, seed=7)
    trajs, group, rewards = [], [], []
    for p, s in enumerate(samples):
        for j, text in enumerate([f"Answer: {s.answer}", f"So it is {int(s.answer) + 3}."]):
            trajs.append(Trajectory(s, finish="stop"))
            trajs[-1].add_segment(proc.tokenize(text) + [proc.eos_token_id], 0)
            group.append(p)
            rewards.append(1.0 - j)
    batch = scoring_batch(proc, trajs, 0, True)

    def run(target_kl: float) -> dict:
        model = copy.deepcopy(base)
        opt = build_optimizer(list(model.parameters()), OptimConfig(lr=1e-2, weight_decay=0.0))
        cfg = UpdateConfig(passes=2, minibatch_size=4, micro_batch_size=4, target_kl=target_kl)
        return policy_update(model, batch, torch.tensor(rewards), torch.tensor(group), LOSSES.get("grpo"), {},
                             opt, cfg)

    free, bounded = run(0.0), run(1e-6)
    assert free["optimizer_steps"] == 4 and free["kl_stopped"] == 0  # 2 passes x 2 minibatches of 2 groups
    assert bounded["optimizer_steps"] == 1 and bounded["kl_stopped"] == 1 and bounded["approx_kl"] > 1e-6


def test_skip_inert_rows_runs_fewer_rows_for_the_same_first_step_gradient(tiny):
    """kimi with negative_weight 0: rows at or below their group's mean reward have zero advantage, and
    skip_inert runs no forward for them. The first optimizer step's gradient equals the full update's
    (both log-ratios are 0 there), and the forwards cover only the other rows."""
    import copy

    from vlrl.algos import LOSSES
    from vlrl.algos.update import UpdateConfig, policy_update
    from vlrl.data.synth import generate
    from vlrl.rollout.buffer import Trajectory
    from vlrl.rollout.scoring import scoring_batch

    base, proc = tiny
    samples = generate("shapes", 2, seed=7) + generate("arithmetic", 2, seed=7)
    trajs, group, rewards = [], [], []
    for p, s in enumerate(samples):  # prompt 3's two responses are both rewarded: all of it is inert
        for j, text in enumerate([f"Answer: {s.answer}", f"So it is {int(s.answer) + 3}. Answer: {s.answer}"]):
            trajs.append(Trajectory(s, finish="stop"))
            trajs[-1].add_segment(proc.tokenize(text) + [proc.eos_token_id], 0)
            group.append(p)
            rewards.append(1.0 if j == 0 or p == 3 else 0.0)
    batch = scoring_batch(proc, trajs, 0, True)

    def first_step(skip: bool) -> tuple[list[torch.Tensor], dict, int]:
        model = copy.deepcopy(base)
        ran = []
        forward = model.response_logprobs
        model.response_logprobs = lambda rows, **kw: (ran.append(len(rows)), forward(rows, **kw))[1]
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay: the gradient is the step's
        cfg = UpdateConfig(passes=1, minibatch_size=len(trajs), micro_batch_size=8, grad_clip=1e9,
                           reference="recompute", skip_inert=skip)
        stats = policy_update(model, batch, torch.tensor(rewards), torch.tensor(group), LOSSES.get("kimi"),
                              {"tau": 0.1, "negative_weight": 0.0}, opt, cfg)
        return [p.grad.clone() for p in model.parameters() if p.grad is not None], stats, sum(ran[1:])

    full, full_stats, full_rows = first_step(False)
    lean, lean_stats, lean_rows = first_step(True)
    assert full_rows == 8 and lean_rows == 3  # the rewarded response of prompts 0-2 (the reference pass aside)
    assert lean_stats["inert_rows_skipped"] == 5 and full_stats["inert_rows_skipped"] == 0
    assert lean_stats["optimizer_steps"] == full_stats["optimizer_steps"] == 1
    assert len(full) == len(lean) and any(float(g.abs().max()) > 0 for g in full)
    for a, b in zip(full, lean):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_rl_in_bf16_trains_and_saves_fp32_weights(sft_tiny, tmp_path, capsys):
    """precision=bf16: rollouts and the update run under bf16 autocast; the rescored reference is within
    bf16's tolerance of the sampler (0.1 per token), the policy moves, and the saved weights are fp32."""
    from safetensors.torch import load_file

    out = main(rl_cfg(sft_tiny, tmp_path, "iterations=2", "precision=bf16", "reference=recompute",
                      "length_penalty.weight=0.5", "length_penalty.warmup_iterations=0"))
    assert "[rl] bf16 autocast, fp32 master weights" in capsys.readouterr().out
    r = [x for x in rows(out) if "loss" in x]
    assert r and all(0 < x["sampling_logprob_diff_max"] < 0.1 for x in r)
    w, init = load_file(str(out / "model.safetensors")), load_file(str(sft_tiny / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in w.values())
    assert max((w[k] - init[k]).abs().max().item() for k in w) > 1e-4
