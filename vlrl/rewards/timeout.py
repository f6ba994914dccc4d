"""Wall-clock timeouts that work in any thread or process.

``signal.alarm`` (what math-verify and many graders use) only works in the main thread of the main
interpreter; inside a data-loader worker, a thread pool or Ray it silently does nothing and a pathological
expression hangs the run. :class:`ProcessTimeout` runs the call in a persistent worker process instead
and, on timeout, kills that process and starts a fresh one on the next call. A fresh worker first runs an
optional ``warmup`` (imports, a first call) under its own, longer limit, so a slow start on a busy machine
is not charged to the first real call.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable


class CallTimeout(TimeoutError):
    """The call did not finish within the limit."""


class ProcessTimeout:
    """Run picklable ``fn(*args)`` in a worker process with a time limit (seconds).

    Calls are serialised (one worker); the worker is started lazily with the ``spawn`` method, so it is safe
    to use from a process that holds torch threads or CUDA state. ``warmup`` (picklable, no arguments) runs
    once in every fresh worker within ``startup_timeout_s``: spawning and importing take seconds under load,
    and ``timeout_s`` is meant for the call alone.
    """

    def __init__(self, timeout_s: float, warmup: Callable[[], Any] | None = None,
                 startup_timeout_s: float = 120.0) -> None:
        self.timeout_s, self.warmup, self.startup_timeout_s = timeout_s, warmup, startup_timeout_s
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
        self._pool = pool
        if self.warmup is not None:
            try:
                pool.submit(self.warmup).result(timeout=self.startup_timeout_s)
            except FutureTimeout:
                self._kill()
                raise CallTimeout(f"the worker did not start within {self.startup_timeout_s:g} s") from None
        return pool

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            for attempt in range(2):  # a worker that died for another reason is replaced once
                try:
                    pool = self._pool or self._start()
                    return pool.submit(fn, *args).result(timeout=self.timeout_s)
                except CallTimeout:  # the start's; FutureTimeout is the builtin TimeoutError since 3.11
                    raise
                except FutureTimeout:
                    self._kill()
                    raise CallTimeout(f"no result within {self.timeout_s:g} s") from None
                except BrokenProcessPool:
                    self._kill()
                    if attempt == 1:
                        raise

    def close(self) -> None:
        with self._lock:
            self._kill()

    def __del__(self) -> None:  # best effort: do not leave a worker behind
        try:
            self._kill()
        except Exception:
            pass
