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


def test_registry_builds_configured_verifiers():
    v = REWARDS.build("math", pattern=r"<ans>(.*?)</ans>", symbolic=False)
    assert v("<ans>4</ans> Answer: 5", s("4")).reward == 1.0
    assert extract_answer("Answer: 5") == "5"
