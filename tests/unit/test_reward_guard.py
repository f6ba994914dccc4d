"""User rewards get the built-in verifier's protection: a raise or a hang is a counted error naming the
reward and the sample, a wrong return type a clear stop (issue 18, point 6)."""

import time
from types import SimpleNamespace

import pytest

from vlrl.rewards.base import RewardResult
from vlrl.rewards.config import RewardConfig
from vlrl.rewards.guard import GuardedReward, RewardError

SAMPLE = SimpleNamespace(id="arithmetic-7", answer="3")


def raises(response, sample):
    raise KeyError("answer_key")


def test_a_raising_reward_is_a_counted_error_naming_reward_and_sample():
    r = GuardedReward(raises, "mine")(" 3", SAMPLE)
    assert r.reward == 0.0
    assert r.error == "reward 'mine' on sample 'arithmetic-7': raised KeyError: 'answer_key'"
    with pytest.raises(RewardError, match="reward 'mine' on sample 'arithmetic-7': raised KeyError"):
        GuardedReward(raises, "mine", on_error="stop")(" 3", SAMPLE)


def test_a_hanging_reward_times_out():
    t = time.time()
    r = GuardedReward(lambda resp, s: time.sleep(3) or RewardResult(1.0), "slow", timeout_s=0.2)("x", SAMPLE)
    assert time.time() - t < 1.5
    assert r.reward == 0.0 and "no result within 0.2 s" in r.error and "'slow'" in r.error
    ok = GuardedReward(lambda resp, s: RewardResult(1.0), "fast", timeout_s=0.2)("x", SAMPLE)  # next calls work
    assert ok.reward == 1.0 and ok.error is None


def test_a_plain_float_is_a_clear_error_saying_what_to_return():
    with pytest.raises(RewardError, match=r"reward 'plain' returned float \(1.0\) for sample 'arithmetic-7'; .*"
                                          r"RewardResult\(reward=<float>\)"):
        GuardedReward(lambda resp, s: 1.0, "plain")("x", SAMPLE)


def test_built_rewards_are_guarded_and_keep_their_attributes(register_reward):
    fn = RewardConfig(kwargs={"symbolic": False}).build()
    assert isinstance(fn, GuardedReward)
    fn("x", SAMPLE)
    assert fn.stats["calls"] == 1  # the verifier's own counters, through the guard
    with pytest.raises(ValueError, match="on_error"):
        RewardConfig(on_error="ignore").build()
    register_reward("test_raises", lambda **_: raises)
    assert "raised KeyError" in RewardConfig(name="test_raises").build()("x", SAMPLE).error


def test_a_guarded_reward_copies_and_pickles():
    import copy
    import pickle

    fn = GuardedReward(raises, "mine")  # a picklable reward stays picklable when guarded
    for twin in (copy.deepcopy(fn), pickle.loads(pickle.dumps(fn))):
        assert "raised KeyError" in twin("x", SAMPLE).error
