"""Long2short math and data: merging, shortest rejection sampling, DPO pairs, the DPO loss, the report."""

from __future__ import annotations

import math

import pytest
import torch

from vlrl.algos import LOSSES
from vlrl.algos.merge import merge_state_dicts
from vlrl.data.long2short import dpo_pairs, shortest_correct, shortest_rs_samples
from vlrl.eval.efficiency import efficiency_table, relative_to
from vlrl.eval.metrics import PromptRecord
from vlrl.types import Sample


def test_merge_average_weights_and_modules():
    a = {"encoder.w": torch.tensor([0.0, 2.0]), "llm.w": torch.tensor([4.0]), "llm.step": torch.tensor([3])}
    b = {"encoder.w": torch.tensor([2.0, 4.0]), "llm.w": torch.tensor([8.0]), "llm.step": torch.tensor([9])}
    m = merge_state_dicts([a, b])
    assert torch.equal(m["encoder.w"], torch.tensor([1.0, 3.0])) and torch.equal(m["llm.w"], torch.tensor([6.0]))
    assert torch.equal(m["llm.step"], torch.tensor([3]))  # integer buffers are not averaged
    m = merge_state_dicts([a, b], weights=[3, 1])  # normalised to 0.75 / 0.25
    assert torch.allclose(m["llm.w"], torch.tensor([5.0]))
    m = merge_state_dicts([a, b], modules=["llm"])  # only the LLM is averaged
    assert torch.equal(m["encoder.w"], a["encoder.w"]) and torch.equal(m["llm.w"], torch.tensor([6.0]))


def test_merge_refuses_different_architectures():
    a = {"llm.w": torch.zeros(2)}
    with pytest.raises(ValueError, match="different architectures.*'llm.w' is \\(2,\\) vs \\(3,\\)"):
        merge_state_dicts([a, {"llm.w": torch.zeros(3)}], names=["A", "B"])
    with pytest.raises(ValueError, match="different architectures"):
        merge_state_dicts([a, {"llm.v": torch.zeros(2)}])
    with pytest.raises(ValueError, match="unknown module"):
        merge_state_dicts([a, a], modules=["vision"])


def rec(id_, correct, lengths):
    return PromptRecord(id=id_, modality="text", domain="d", difficulty=1, pair_id=None, correct=correct,
                        answers=["x"] * len(correct), lengths=lengths, responses=[f"{id_}-r{i}" for i in range(len(correct))])


SAMPLES = [Sample(id=i, question=f"q {i}", answer="1") for i in ("a", "b", "c")]
RECORDS = [
    rec("a", [True, True, False, True], [30, 12, 50, 17]),  # shortest correct: r1 (12)
    rec("b", [False, False], [5, 9]),  # nothing correct: skipped
    rec("c", [True, True, True], [10, 10, 14]),  # tie: first; 14 < 1.5 x 10 is not a rejected candidate
]


def test_shortest_correct_and_rs_samples():
    assert [shortest_correct(r) for r in RECORDS] == [1, None, 0]
    sft = shortest_rs_samples(RECORDS, SAMPLES)
    assert [(s.id, s.response) for s in sft] == [("a", "a-r1"), ("c", "c-r0")]
    every = shortest_rs_samples(RECORDS, SAMPLES, select="all")  # ReST: every correct response, in order
    assert [(s.id, s.response) for s in every] == [("a", "a-r0"), ("a", "a-r1"), ("a", "a-r3"), ("c", "c-r0"),
                                                   ("c", "c-r1"), ("c", "c-r2")]
    with pytest.raises(ValueError, match="select 'longest'"):
        shortest_rs_samples(RECORDS, SAMPLES, select="longest")


def test_dpo_pairs_exact():
    pairs = dpo_pairs(RECORDS, SAMPLES, ratio=1.5, pairs_per_prompt=5)
    # prompt a: chosen r1 (12); candidates: r0 correct 30 >= 18, r2 wrong 50, r3 correct 17 < 18 (no)
    assert [(p.sample.id, p.chosen, p.rejected, p.rejected_correct) for p in pairs] == [
        ("a", "a-r1", "a-r2", False), ("a", "a-r1", "a-r0", True)]
    assert len(dpo_pairs(RECORDS, SAMPLES, pairs_per_prompt=1)) == 1
    assert len(dpo_pairs(RECORDS, SAMPLES, ratio=1.2, pairs_per_prompt=5)) == 4  # c-r2 (14 >= 12) joins, a-r3 too


def test_dpo_loss_hand_computed():
    # two pairs; token log-probs over 2 tokens each, reference all zeros, beta 0.5
    logp = torch.tensor([[-1.0, -1.0], [-2.0, -2.0], [-0.5, -0.5], [-0.5, -1.5]], requires_grad=True)
    ref = torch.zeros(4, 2)
    mask = torch.ones(4, 2, dtype=torch.bool)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])  # pair 0: row 0 chosen; pair 1: row 3 chosen
    group = torch.tensor([0, 0, 1, 1])
    out = LOSSES.get("dpo")(logp, ref, mask, rewards, group, beta=0.5)
    # pair 0: margin = 0.5 * (-2 - (-4)) = 1; pair 1: margin = 0.5 * (-2 - (-1)) = -0.5
    expect = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    assert out.loss.item() == pytest.approx(expect, abs=1e-6)
    assert out.metrics["pref_accuracy"] == 0.5 and out.metrics["margin"] == pytest.approx(0.25)
    out.loss.backward()
    assert logp.grad[0, 0] < 0 and logp.grad[1, 0] > 0  # raise chosen, lower rejected
    with pytest.raises(ValueError, match="exactly one chosen"):
        LOSSES.get("dpo")(logp, ref, mask, torch.ones(4), group)


def test_efficiency_table_and_relative():
    reps = {"long": {"overall": {"pass@1": 0.5, "mean_tokens": 100.0, "prompts": 10},
                     "by_modality": {"image": {"pass@1": 0.6, "mean_tokens": 120.0, "prompts": 5}}},
            "dpo": {"overall": {"pass@1": 0.48, "mean_tokens": 50.0, "prompts": 10},
                    "by_modality": {"image": {"pass@1": 0.6, "mean_tokens": 30.0, "prompts": 5}}}}
    table = efficiency_table(reps)
    assert set(table) == {"overall", "image"} and set(table["image"]) == {"long", "dpo"}
    rel = relative_to(table, "long")
    assert rel["overall"]["dpo"]["token_cut"] == pytest.approx(0.5)
    assert rel["overall"]["dpo"]["accuracy_change_points"] == pytest.approx(-2.0)
    assert rel["image"]["dpo"]["token_cut"] == pytest.approx(0.75)


def _rep(acc: float, tokens: float) -> dict:
    return {"overall": {"pass@1": acc, "mean_tokens": tokens, "prompts": 10}, "by_modality": {}}


def test_best_efficiency_is_the_most_accurate_of_the_models_short_enough():
    from vlrl.eval.efficiency import best_efficiency

    reports = {"long": _rep(0.30, 100), "merge": _rep(0.18, 50), "shortest_rs": _rep(0.26, 49),
               "dpo": _rep(0.31, 98), "short": _rep(0.26, 40)}
    # dpo is the most accurate but only 2% shorter; of the >= 40%-shorter ones, 0.26 ties and 40 tokens wins
    assert best_efficiency(reports, "long", 0.4) == "short"
    assert best_efficiency({k: v for k, v in reports.items() if k != "short"}, "long", 0.4) == "shortest_rs"
    # a 55% cut rule leaves only short (60%) and shortest_rs (51% -> out), merge (50% -> out)
    assert best_efficiency(reports, "long", 0.55) == "short"
    assert best_efficiency(reports, "long", 0.7) == "long"  # none is short enough
