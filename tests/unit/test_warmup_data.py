import pytest

from vlrl.curation import warmup_data as wd
from vlrl.eval.metrics import PromptRecord
from vlrl.types import Sample


def test_programmatic_traces_are_verified_and_long():
    samples = wd.programmatic("shapes", 20, seed=4, style="long", slip=0.5)
    assert len(samples) == 20 and all(s.response.startswith("Plan:") for s in samples)


def test_rejection_sampling_keeps_only_verified_responses(monkeypatch):
    prompts = [Sample(id="a", question="1+1?", answer="2"), Sample(id="b", question="2+2?", answer="4")]
    # a stub harness: prompt a gets 2 correct of 4 (one short, one long), b none
    fake = [PromptRecord("a", "text", "d", 1, None, [True, False, True, False], ["2", "3", "2", None], [9, 3, 4, 5],
                         [None] * 4, ["long... Answer: 2", "Answer: 3", "Answer: 2", "hmm"]),
            PromptRecord("b", "text", "d", 1, None, [False] * 4, [None] * 4, [1] * 4, [None] * 4, ["?"] * 4)]
    seen = {}

    def stub(model, processor, samples, params, reward_fn, batch_size, seed, system_prompt):
        seen.update(n=params.num_samples, system=system_prompt)
        return fake

    monkeypatch.setattr(wd, "evaluate_samples", stub)
    kept, rates = wd.rejection_sample(None, None, prompts, n=4)
    assert seen == {"n": 4, "system": wd.LONG_COT_SYSTEM_PROMPT}
    assert rates == {"a": 0.5, "b": 0.0}
    assert [k.response for k in kept] == ["Answer: 2", "long... Answer: 2"]
    assert all(k.meta["pass_rate"] == 0.5 and k.meta["source_id"] == "a" for k in kept)
    kept, _ = wd.rejection_sample(None, None, prompts, n=4, keep="shortest")
    assert [k.response for k in kept] == ["Answer: 2"]
    with pytest.raises(ValueError):
        wd.rejection_sample(None, None, prompts, keep="longest")
