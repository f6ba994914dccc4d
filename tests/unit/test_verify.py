import threading
import time

import pytest

from vlrl.rewards import REWARDS, AnswerVerifier
from vlrl.rewards.extract import extract_answer
from vlrl.rewards.verify import to_number
from vlrl.types import Sample


def s(answer):
    return Sample(id="q", question="?", answer=answer)


@pytest.fixture(scope="module")
def verifier():
    v = AnswerVerifier(timeout_s=3.0)
    yield v
    v.close()


@pytest.mark.parametrize("response,answer,expected", [
    ("Answer: 0.5", "1/2", 1.0),                      # decimal vs fraction
    (r"so \boxed{\frac{1}{2}}", "0.5", 1.0),          # latex fraction
    (r"\boxed{\dfrac{3}{4}}", "0.75", 1.0),
    ("Answer: 12 cm.", "12", 1.0),                    # trailing unit and punctuation
    ("Answer: 1,000", "1000", 1.0),                   # thousands separator
    ("Answer: 7!", "7", 1.0),
    ("Answer: 13", "12", 0.0),
    ("Answer: 0.50001", "0.5", 1.0),                  # within rel_tol 1e-4
    ("Answer: 0.6", "0.5", 0.0),
    ("Answer: Blue", "blue", 1.0),                    # normalised string
    ("I think it is 3", "3", 0.0),                    # no parseable final answer
    (r"\boxed{x + 1}", "1 + x", 1.0),                 # symbolic, through math-verify
    (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", 1.0),
    (r"\boxed{x^2}", "2x", 0.0),
])
def test_equivalence(verifier, response, answer, expected):
    r = verifier(response, s(answer))
    assert r.reward == expected and r.error is None


def test_no_answer_is_not_an_error(verifier):
    r = verifier("no idea at all", s("3"))
    assert r.reward == 0.0 and r.extracted is None and r.error is None


def test_numbers_by_hand():
    assert to_number("-3/4") == -0.75 and to_number(r"-\frac{1}{4}") == -0.25 and to_number("50%") == 50
    assert to_number("x") is None and to_number("1/0") is None


def test_pathological_expression_times_out_inside_a_worker_thread():
    """signal.alarm does nothing off the main thread; our process timeout must still stop it."""
    v = AnswerVerifier(timeout_s=1.5)
    out = {}

    def work():
        t0 = time.time()
        out["r"] = v(r"\boxed{9^{9^{9^{9}}}}", s("1"))
        out["t"] = time.time() - t0

    th = threading.Thread(target=work)
    th.start()
    th.join(timeout=60)
    assert not th.is_alive()
    assert out["r"].error is not None and "timed out" in out["r"].error
    assert v.stats["timeouts"] == 1 and out["t"] < 30
    assert v("Answer: 2", s("2")).reward == 1.0  # the verifier recovers (fresh worker)
    assert v(r"\boxed{x+x}", s("2x")).reward == 1.0
    v.close()


def test_a_fresh_workers_start_is_not_charged_to_its_first_call():
    """Spawning a worker and importing sympy take seconds on a busy machine; ``timeout_s`` bounds the call
    alone. The warm-up (2 s here) runs under its own limit, again after a timed-out worker is replaced."""
    from functools import partial

    from vlrl.rewards.timeout import CallTimeout, ProcessTimeout

    runner = ProcessTimeout(1.0, warmup=partial(time.sleep, 2.0), startup_timeout_s=60)
    try:
        assert runner.run(abs, -3) == 3  # the 2 s warm-up is not the 1 s call
        with pytest.raises(CallTimeout, match="no result within 1 s"):
            runner.run(time.sleep, 5.0)
        assert runner.run(abs, -4) == 4  # a fresh worker, warmed again
    finally:
        runner.close()
    slow = ProcessTimeout(1.0, warmup=partial(time.sleep, 30.0), startup_timeout_s=0.5)
    with pytest.raises(CallTimeout, match="did not start within 0.5 s"):
        slow.run(abs, -1)
    slow.close()


def test_registry_builds_configured_verifiers():
    v = REWARDS.build("math", pattern=r"<ans>(.*?)</ans>", symbolic=False)
    assert v("<ans>4</ans> Answer: 5", s("4")).reward == 1.0
    assert extract_answer("Answer: 5") == "5"


def test_option_index_reads_letters_and_option_texts():
    from vlrl.rewards.verify import option_index

    opts = ["30", "145°", "the second"]
    # by text (normalised, numbers with units), then by letter alone or leading the option
    assert [option_index(t, opts) for t in ("145", "145°", "The second.", "B", "(b)", "C.", "(C) the second",
                                            "B: 145")] == [1, 1, 2, 1, 1, 2, 2, 1]
    assert [option_index(t, opts) for t in ("D", "160", "a", "Because")] == [None, None, None, None]


def test_meta_widens_what_counts_choices_answers_and_tolerances():
    from vlrl.types import Sample

    v = AnswerVerifier(symbolic=False)
    mc = Sample(id="m", question="q", answer="B", meta={"choices": ["cat", "dog"]})
    # the reference is the letter B: "dog" names it by text, "A" / "cat" name the other option
    assert [v(r, mc).reward for r in (r"\boxed{B}", r"\boxed{dog}", r"\boxed{A}", r"\boxed{cat}")] == [1, 1, 0, 0]
    mc_text = Sample(id="t", question="q", answer="dog", meta={"choices": ["cat", "dog"]})
    assert [v(r, mc_text).reward for r in (r"\boxed{B}", r"\boxed{dog}", r"\boxed{A}")] == [1, 1, 0]
    many = Sample(id="a", question="q", answer="Red", meta={"answers": ["Red", "crimson"]})
    assert [v(r, many).reward for r in (r"\boxed{crimson}", r"\boxed{red}", r"\boxed{blue}")] == [1, 1, 0]
    # rel_tol 0.05 around 40: |41.9 - 40| = 1.9 <= 0.05 * 41.9 = 2.095 -> right; |42.2 - 40| = 2.2 > 2.11 -> wrong
    relaxed = Sample(id="r", question="q", answer="40", meta={"rel_tol": 0.05})
    assert [v(r, relaxed).reward for r in (r"\boxed{41.9}", r"\boxed{42.2}")] == [1, 0]
    assert v(r"\boxed{41.9}", Sample(id="s", question="q", answer="40")).reward == 0  # default tolerance


def test_choices_template():
    from vlrl.data.mapping import with_choices

    assert with_choices("Which?", ["x", "y"]) == "Which?\nOptions:\n(A) x\n(B) y"
