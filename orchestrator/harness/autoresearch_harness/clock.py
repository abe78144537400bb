"""The per-call limit on the candidate's side: a call that runs past it raises CallTimeout.

Raised in the session's main thread, and only inside candidate code: a watchdog
thread rings, the calls themselves only read a monotonic clock. The trusted side
waits a few seconds longer, then counts the worker as gone (a candidate that
catches CallTimeout only hangs its own session).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Any


class CallTimeout(BaseException):
    """A call of the trusted side's ran past the per-call limit (raised in the candidate's code)."""


class Clock:
    """The per-call limit, raised as CallTimeout in the session's main thread, in candidate code.

    `running()` wraps candidate code the trusted side asked for (the outermost such call
    starts the clock); `asking()` wraps a request candidate code makes of the trusted side
    (the limit is never raised inside the protocol: it waits until candidate code runs
    again). A watchdog thread rings; the calls themselves only read a monotonic clock.
    """

    def __init__(self, limit_s: float) -> None:
        self.limit_s, self.candidate, self.pending = limit_s, False, False
        self.started: float | None = None
        self.main = threading.main_thread()
        self._running, self._asking = _Running(self), _Asking(self)
        if limit_s > 0:
            signal.signal(signal.SIGALRM, self._ring)
            threading.Thread(target=self._watch, name="harness-clock", daemon=True).start()

    def _watch(self) -> None:
        """Wake at the running call's deadline, or a whole limit on when none runs (a call that
        starts meanwhile cannot end sooner): exact, and nothing on the calls' own path."""
        while True:
            started = self.started
            left = self.limit_s if started is None else started + self.limit_s - time.monotonic()
            if left > 0:
                time.sleep(max(left, 0.001))
                continue
            if self.started is not started:  # that call ended meanwhile: another one's clock
                continue
            self.started = None
            signal.pthread_kill(self.main.ident or 0, signal.SIGALRM)

    def _ring(self, signum: int, frame: Any) -> None:
        if self.candidate:
            self.candidate = False
            raise CallTimeout
        self.pending = True

    def running(self) -> Any:
        return self._running if threading.current_thread() is self.main else _NOTHING

    def asking(self) -> Any:
        return self._asking if threading.current_thread() is self.main else _NOTHING


class _Running:
    def __init__(self, clock: Clock) -> None:
        self.clock: Clock = clock
        self.stack: list[bool] = []

    def __enter__(self) -> None:
        c = self.clock
        outer = not self.stack
        if outer:
            c.pending, c.started = False, time.monotonic()
        self.stack.append(c.candidate)
        c.candidate = True

    def __exit__(self, *exc: object) -> None:
        c = self.clock
        c.candidate = self.stack.pop()
        if not self.stack:
            c.started, c.pending = None, False


class _Asking:
    def __init__(self, clock: Clock) -> None:
        self.clock: Clock = clock
        self.stack: list[bool] = []

    def __enter__(self) -> None:
        self.stack.append(self.clock.candidate)
        self.clock.candidate = False

    def __exit__(self, *exc: object) -> None:
        c = self.clock
        c.candidate = self.stack.pop()
        if c.candidate and c.pending:
            c.pending = False
            raise CallTimeout


_NOTHING = contextlib.nullcontext()


# -- what the candidate holds of the trusted side -----------------------------
