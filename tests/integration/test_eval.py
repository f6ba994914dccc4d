import json

import pytest

from vlrl.stages.evaluate import EvalConfig, main


def test_eval_writes_every_breakdown(saved_tiny, tmp_path):
    cfg = EvalConfig(model=str(saved_tiny), n=4, temperature=1.0, max_new_tokens=8, ks=[1, 2, 4],
                     sources=["synth:shapes?n=6&seed=50&levels=1-2", "synth:text_rendered?n=3&seed=50&levels=1",
                              "synth:arithmetic?n=3&seed=50&levels=4"], output_dir=str(tmp_path))
    result = main(cfg)
    for key in ("overall", "by_modality", "by_domain", "by_difficulty", "modality_gap"):
        assert key in result
    assert set(result["by_modality"]) == {"image", "text", "text_rendered"}
    assert result["modality_gap"]["pairs"] == 3
    o = result["overall"]
    assert o["prompts"] == 15 and o["responses"] == 60
    for k in ("pass@1", "pass@2", "pass@4", "maj@2", "maj@4", "mean_tokens", "p95_tokens"):
        assert k in o
    assert o["p95_tokens"] <= 8
    for f in ("eval.json", "eval.md", "eval.png", "records.jsonl", "config.yaml"):
        assert (tmp_path / f).exists()
    rows = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 15 and all(len(r["responses"]) == 4 for r in rows)
    assert "modality=text_rendered" in (tmp_path / "eval.md").read_text()


def test_eval_refuses_overlap_with_training_ids(saved_tiny, tmp_path):
    cfg = EvalConfig(model=str(saved_tiny), sources=["synth:shapes?n=4&seed=1"],
                     exclude_ids_from=["synth:shapes?n=10&seed=1"], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="also appear in the training data"):
        main(cfg)


def test_greedy_answers_do_not_depend_on_the_generation_batch(sft_tiny):
    """evaluate_held_out batches 64 greedy prompts at a time where it used 32: the answers must be the same
    whatever the batch (left padding and masks), so earlier measurements stay valid."""
    from vlrl.eval import evaluate_samples
    from vlrl.models import SamplingParams, load_pretrained
    from vlrl.rewards import REWARDS
    from vlrl.data import load_data

    model, proc = load_pretrained(sft_tiny)
    samples = load_data(["synth:shapes?n=7&seed=999&levels=1-3", "synth:arithmetic?n=7&seed=999",
                         "synth:text_rendered?n=3&seed=999"])
    params = SamplingParams(max_new_tokens=24)
    runs = [evaluate_samples(model, proc, samples, params, REWARDS.build("math", symbolic=False), batch_size=b,
                             progress=False) for b in (3, 17)]
    assert [r.responses for r in runs[0]] == [r.responses for r in runs[1]]


def test_a_registered_reward_scores_the_held_out_evaluation_of_every_stage(saved_tiny, tmp_path):
    """Extension point: a reward registered in one place is what a stage's ``reward:`` key builds, for
    training (RL's ``cfg.reward.build()``) and for its held-out evaluation alike. Here a reward that
    accepts any response: the untrained model is always right under it, never under the verifier."""
    from vlrl.eval.heldout import evaluate_held_out
    from vlrl.models import load_pretrained
    from vlrl.rewards import REWARDS, RewardConfig, RewardResult
    from vlrl.stages.rl import RLConfig

    if "anything_goes" not in REWARDS.keys():
        @REWARDS.register("anything_goes", origin="tests")
        def _build(**_):
            return lambda response, sample: RewardResult(1.0, extracted=response[:8])

    try:
        model, proc = load_pretrained(saved_tiny)
        src = ["synth:arithmetic?n=4&seed=999&levels=1"]
        cfg = RLConfig(reward=RewardConfig(name="anything_goes"))
        assert cfg.reward.build()("1", None).reward == 1.0  # what RL trains on
        custom = evaluate_held_out(model, proc, src, 4, tmp_path / "a", "t", cfg.reward)
        default = evaluate_held_out(model, proc, src, 4, tmp_path / "b", "t")
        assert custom["overall"]["pass@1"] == 1.0 and default["overall"]["pass@1"] < 1.0
    finally:  # the registry is global: leave it as the other tests expect it
        REWARDS._builders.pop("anything_goes", None)
        REWARDS._origin.pop("anything_goes", None)
