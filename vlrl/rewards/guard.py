"""Every reward a stage builds runs guarded, built-in or plug-in alike.

A reward function that raises or does not return within ``timeout_s`` gives a *verifier error* naming the
reward and the sample (reward 0, counted and reported by the stage, like the built-in verifier's
timeouts), or stops the run with that message under ``on_error: stop``. A function that returns something
other than a :class:`~vlrl.rewards.base.RewardResult` is a configuration mistake, not a per-sample
accident: it stops the run at once with a message that says what to return.

The call runs in a worker thread so that a hang can be timed out from any thread. A Python thread
cannot be killed: a timed-out call is abandoned (its daemon thread ends when the call does, or with the
process) and later calls get a fresh worker. A reward that can spin forever on CPU should bound its own
work (the built-in verifier runs symbolic checks in a killable process: ``vlrl.rewards.timeout``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from vlrl.rewards.base import RewardFn, RewardResult

ON_ERROR = ("count", "stop")


class RewardError(ValueError):
    """A reward function failed and ``on_error`` is ``stop``, or it returned the wrong type."""


def _in_thread(fn, *args: Any) -> Future:
    """Start ``fn(*args)`` in a daemon thread; the future holds its result or exception."""
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller, which names the sample
            future.set_exception(e)

    threading.Thread(target=target, daemon=True, name="vlrl-reward").start()
    return future


class GuardedReward:
    """``fn(response, sample)`` with a time limit, exception accounting and a return-type check."""

    def __init__(self, fn: RewardFn, name: str, timeout_s: float = 30.0, on_error: str = "count") -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"reward.on_error: '{on_error}' is not one of {', '.join(ON_ERROR)}")
        if timeout_s <= 0:
            raise ValueError(f"reward.timeout_s must be positive, got {timeout_s}")
        self.fn, self.name, self.timeout_s, self.on_error = fn, name, timeout_s, on_error

    def __getattr__(self, item: str) -> Any:  # stats, close() and other attributes of the wrapped reward
        fn = self.__dict__.get("fn")
        if fn is None:  # not set up yet (copy / unpickling look attributes up before __init__'s fields)
            raise AttributeError(item)
        return getattr(fn, item)

    def _failed(self, sample: Any, why: str) -> RewardResult:
        msg = f"reward '{self.name}' on sample '{getattr(sample, 'id', '?')}': {why}"
        if self.on_error == "stop":
            raise RewardError(msg + " (reward.on_error=stop; set it to count to score such responses 0)")
        return RewardResult(0.0, error=msg)

    def __call__(self, response: str, sample: Any) -> RewardResult:
        try:
            result = _in_thread(self.fn, response, sample).result(timeout=self.timeout_s)
        except FutureTimeout:
            return self._failed(sample, f"no result within {self.timeout_s:g} s (reward.timeout_s)")
        except Exception as e:  # noqa: BLE001 - any failure of user code is one counted verifier error
            return self._failed(sample, f"raised {type(e).__name__}: {e}")
        if not isinstance(result, RewardResult):
            raise RewardError(f"reward '{self.name}' returned {type(result).__name__} ({result!r:.60}) for sample "
                              f"'{getattr(sample, 'id', '?')}'; a reward function returns "
                              f"vlrl.rewards.base.RewardResult(reward=<float>)")
        return result
