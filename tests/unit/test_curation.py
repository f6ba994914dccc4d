"""Curation: tags, evaluability filters (borderline cases included), buckets, easy-to-hack, balanced
selection and the probe cache (resume without recomputation)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from vlrl.curation import (DEFAULT_DISCIPLINES, DEFAULT_DOMAINS, ProbeCache, ProbeConfig, RuleFilterConfig,
                           answer_type, balanced_select, bucket, easy_to_hack, is_choice, is_proof, is_true_false,
                           probe, quotas, rule_reasons, tag_sample)
from vlrl.curation.tags import parse_choice
from vlrl.data.synth import generate
from vlrl.types import Sample


def S(q, a=None, **kw):
    return Sample(id=kw.pop("id", q[:20]), question=q, answer=a, **kw)


@pytest.mark.parametrize("q,a,kind", [
    ("What is 3 + 4?", "7", "integer"),
    ("What is 1/2 + 1/4?", "3/4", "number"),
    ("What is 0.5 * 3?", "1.5", "number"),
    ("Simplify (a+2)(a-2).", "a^2-4", "expression"),
    ("What colour is the sky?", "blue", "string"),
    ("Which is larger, 3 or 5?", "5", "choice"),
    ("How many? (A) 2 (B) 3 (C) 4", "B", "choice"),
    ("True or false: 2 + 2 = 4.", "True", "boolean"),
    ("Prove that the sum of two even numbers is even.", None, "proof"),
    ("Describe the picture.", None, "none"),
])
def test_answer_type(q, a, kind):
    assert answer_type(S(q, a)) == kind


def test_choice_in_disguise_and_not():
    assert is_choice(S("Which is larger, 3 or 5?", "5"))
    assert is_choice(S("Which of the following is prime: 4, 6, 7?", "7"))
    assert not is_choice(S("What is 3 or 5 more than 10?", "13"))  # the answer is neither side
    assert not is_choice(S("What is 12 + 30?", "42"))


def test_true_false_borderline():
    assert is_true_false(S("True or false: 7 is prime.", "true"))
    assert is_true_false(S("Is 12 greater than 7? Answer yes or no.", "yes"))
    # a numeric question that mentions "true" is not a true/false question
    assert not is_true_false(S("It is true that x = 3. What is x + 4?", "7"))
    assert not is_true_false(S("True or false aside, what is 6 * 7?", "42"))


def test_proof_and_rule_reasons():
    cfg = RuleFilterConfig()
    assert is_proof(S("Show that the product of two odd numbers is odd.", "odd"))
    assert rule_reasons(S("Prove that there are infinitely many primes."), cfg) == ["proof"]
    assert rule_reasons(S("What is 2 + 5?", "7"), cfg) == []
    assert rule_reasons(S("Describe the picture."), cfg) == ["no_reference"]
    routed = S("Describe the picture.")
    assert rule_reasons(routed, RuleFilterConfig(no_reference="critic")) == []
    assert routed.meta["reward"] == "critic"
    assert rule_reasons(S("Which is larger, 3 or 5?", "5"), RuleFilterConfig(drop_choice=False)) == []


def test_tags_keep_existing_and_rules():
    s = S("How many red circles are there?", "2", domain="general")
    tags = tag_sample(s, DEFAULT_DOMAINS, DEFAULT_DISCIPLINES)
    assert tags == {"domain": "counting", "discipline": "visual_reasoning", "modality": "text",
                    "answer_type": "integer"}
    kept = S("What is 2 + 2?", "4", domain="olympiad", meta={"tags": {"discipline": "competition"}})
    tags = tag_sample(kept, DEFAULT_DOMAINS, DEFAULT_DISCIPLINES)
    assert tags["domain"] == "olympiad" and tags["discipline"] == "competition"
    assert parse_choice("I think it is Counting.", ["arithmetic", "counting"]) == "counting"
    assert parse_choice("no idea", ["arithmetic"]) is None


def test_buckets():
    th = {"trivial": 1.0, "easy": 0.7, "medium": 0.3, "hard": 0.01, "unsolved": 0.0}
    assert [bucket(p, th) for p in (1.0, 0.8, 0.7, 0.5, 0.1, 0.0)] == [
        ("trivial", 0), ("easy", 1), ("easy", 1), ("medium", 2), ("hard", 3), ("unsolved", 4)]
    with pytest.raises(ValueError, match="below every"):
        bucket(0.0, {"easy": 0.5})


def test_easy_to_hack_one_in_eight():
    assert easy_to_hack([False] * 7 + [True])
    assert not easy_to_hack([False] * 8)


def test_quotas_exact_and_sum():
    q = quotas(10, {"m": ["a", "b"], "d": ["x", "y"]}, {"m": {"a": 0.6, "b": 0.4}, "d": {"x": 0.5, "y": 0.5}})
    assert q == {("a", "x"): 3, ("a", "y"): 3, ("b", "x"): 2, ("b", "y"): 2}
    q = quotas(7, {"m": ["a", "b", "c"]}, {})
    assert sum(q.values()) == 7 and sorted(q.values()) == [2, 2, 3]


def _pool(counts: dict) -> list[Sample]:
    out = []
    for (mod, diff), n in counts.items():
        for i in range(n):
            out.append(S(f"q {mod} {diff} {i}", "1", id=f"{mod}-{diff}-{i}", difficulty=diff))
            out[-1].meta["tags"] = {"modality": mod}
    return out


def test_balanced_selection_exact_when_pool_allows():
    pool = _pool({("image", 1): 50, ("image", 2): 50, ("text", 1): 50, ("text", 2): 50})
    sel, rep = balanced_select(pool, 40, ["modality", "difficulty"],
                               {"modality": {"image": 0.75, "text": 0.25}, "difficulty": {"1": 0.5, "2": 0.5}})
    counts = Counter((s.meta["tags"]["modality"], s.difficulty) for s in sel)
    assert counts == {("image", 1): 15, ("image", 2): 15, ("text", 1): 5, ("text", 2): 5}
    assert rep["shortfall"] == 0 and len({s.id for s in sel}) == 40


def test_balanced_selection_reports_shortfall_and_fills():
    pool = _pool({("image", 1): 2, ("text", 1): 30})
    sel, rep = balanced_select(pool, 20, ["modality"])
    assert len(sel) == 12 and rep["shortfall"] == 8
    assert rep["short_cells"] == [{"modality": "image", "quota": 10, "available": 2, "selected": 2}]
    sel, rep = balanced_select(pool, 20, ["modality"], fill=True)
    assert len(sel) == 20 and Counter(s.meta["tags"]["modality"] for s in sel) == {"image": 2, "text": 18}


class CountingReward:
    """Correct iff the response text equals the sample's answer."""

    def __call__(self, response, sample):
        from vlrl.rewards.base import RewardResult

        return RewardResult(reward=float(response.strip() == sample.answer), extracted=response)


def test_probe_cache_resumes_without_recompute(tiny, tmp_path, monkeypatch):
    import vlrl.curation.difficulty as diff

    model, processor = tiny
    samples = [S(f"What is {i} + 1?", str(i + 1), id=f"p{i}") for i in range(6)]
    cfg = ProbeConfig(n=3, temperature=1.0, max_new_tokens=3, batch_size=2)
    calls = []
    real = diff._run_batch
    monkeypatch.setattr(diff, "_run_batch", lambda m, p, chunk, *a: calls.append([s.id for s in chunk]) or real(m, p, chunk, *a))
    cache = ProbeCache(tmp_path, "solve")
    first = probe(model, processor, samples[:4], cfg, CountingReward(), cache, "model-a", progress=False)
    assert calls == [["p0", "p1"], ["p2", "p3"]] and all(len(v) == 3 for v in first.values())
    calls.clear()
    again = probe(model, processor, samples, cfg, CountingReward(), ProbeCache(tmp_path, "solve"), "model-a",
                  progress=False)  # a fresh cache object reads the file: only p4, p5 are generated
    assert calls == [["p4", "p5"]] and {k: again[k] for k in first} == first
    calls.clear()
    probe(model, processor, samples[:2], cfg, CountingReward(), ProbeCache(tmp_path, "solve"), "model-b",
          progress=False)  # another model: recomputed
    assert calls == [["p0", "p1"]]


def test_stub_model_pass_rates_to_buckets(tiny, tmp_path, monkeypatch):
    """Difficulty buckets from a stub generator with known per-prompt success probabilities."""
    import vlrl.curation.difficulty as diff

    p_success = {"easy": 1.0, "mid": 0.5, "never": 0.0}
    gen = torch.Generator().manual_seed(0)

    def stub(model, processor, chunk, cfg, reward_fn, generator):
        return [[bool(torch.rand((), generator=gen) < p_success[s.id]) for _ in range(cfg.n)] for s in chunk]

    monkeypatch.setattr(diff, "_run_batch", stub)
    samples = [S(f"q {k}", "1", id=k) for k in p_success]
    res = probe(_Dummy(), None, samples, ProbeConfig(n=200), CountingReward(),
                ProbeCache(tmp_path, "solve"), "m", progress=False)
    th = {"trivial": 1.0, "easy": 0.7, "medium": 0.3, "hard": 0.01, "unsolved": 0.0}
    rates = {k: sum(v) / len(v) for k, v in res.items()}
    assert bucket(rates["easy"], th)[0] == "trivial" and bucket(rates["never"], th)[0] == "unsolved"
    assert abs(rates["mid"] - 0.5) < 0.1 and bucket(rates["mid"], th)[0] == "medium"


class _Dummy:
    device = "cpu"

    def eval(self):
        return self


def test_pool_generator_plants_every_kind():
    pool = generate("curation_pool", 200, seed=3)
    kinds = Counter(s.meta["kind"] for s in pool)
    assert set(kinds) == {"regular", "choice", "true_false", "proof", "no_reference", "guessable"}
    cfg = RuleFilterConfig()
    for s in pool:  # the rule filters catch exactly the planted rule kinds
        reasons = rule_reasons(s, cfg)
        expect = {"choice": "multiple_choice", "true_false": "true_false", "proof": "proof",
                  "no_reference": "no_reference"}.get(s.meta["kind"])
        assert (reasons == [expect]) if expect else (reasons == []), (s.question, s.answer, reasons)
