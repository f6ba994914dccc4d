"""``math_steps``: a right answer counts only when the arithmetic stated on the way holds."""

from vlrl.rewards import REWARDS
from vlrl.rewards.steps import false_steps
from vlrl.types import Sample

CAUGHT_SLIP = ("7 + 9 = 17.\nWait, let me recheck that: 7 + 9 is not 17. 7 + 9 = 16.\n"
               "16 * 3 = 48.\nCheck: 3 * 16 = 48 as well.\nAnswer: 48")


def test_false_steps_finds_false_equations_and_false_negations():
    assert false_steps(CAUGHT_SLIP) == []  # the slip is retracted by the model itself
    assert false_steps("8 + 5 = 13.\nCheck: 13 - 4 = 8, which matches.\nAnswer: 13") == ["13 - 4 = 8"]
    # a "retraction" of a true equation is itself false
    assert false_steps("8 + 5 = 13.\nWait: 8 + 5 is not 13. 8 + 5 = 13.\nAnswer: 13") == ["8 + 5 is not 13"]
    # retracting a different result does not excuse the false equation
    assert false_steps("6 x 7 = 41. Wait: 6 x 7 is not 40.") == ["6 x 7 = 41", ]
    assert false_steps("12 - 15 = -3, 4 * 25 = 100, 2 × 3 = 6") == []
    # numbers inside larger numbers or decimals are not equations
    assert false_steps("1.5 + 2 = 3.5 and version 2-1=3.0") == []


def test_math_steps_reward():
    fn = REWARDS.build("math_steps", symbolic=False, inconsistent_reward=0.25)
    q13, q48 = Sample(id="a", question="8 + 5?", answer="13"), Sample(id="b", question="(7 + 9) * 3?", answer="48")
    assert fn(CAUGHT_SLIP, q48).reward == 1.0
    lucky = fn("8 + 5 = 13.\nCheck: 13 - 4 = 8.\nAnswer: 13", q13)
    assert lucky.reward == 0.25 and lucky.extracted == "13"
    assert fn("8 + 5 = 12.\nAnswer: 12", q13).reward == 0.0  # a wrong answer stays 0
    assert fn.stats["false_steps"] == 1 and fn.stats["calls"] == 3


def test_false_steps_evaluates_chains_with_precedence():
    assert false_steps("Tens: 1 + 0 + 1 = 2. Then 2 + 3 * 4 = 14 and 20 - 2 * 3 - 4 = 10.") == []
    assert false_steps("Tens: 1 + 0 + 1 = 3.") == ["1 + 0 + 1 = 3"]
    assert false_steps("(2 + 3) * 4 = 20") == []  # parenthesised: not checked
