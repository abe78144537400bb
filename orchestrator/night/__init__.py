"""The night: propose, dispatch, judge, decide, merge, until a stop rule fires.

See README.md in this folder for what each file holds. The driver (`driver.py`)
owns the lifecycle and the main loop; the pieces take what they need (the
ledger, the workspace, a `note` callback) and return what the driver must do
next, so nothing here calls back into the driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.errors import Cancelled

T = TypeVar("T")

Note = Callable[..., None]
"""`note(event, sentence, **fields)`: one event for events.jsonl and the terminal."""
Event = Callable[..., None]
"""`event(name, **fields)`: one event for events.jsonl only."""
Say = Callable[[str], None]
"""Where sentences for the person go (the terminal, or the live view above it)."""


@dataclass(frozen=True)
class Backoff:
    """Pauses between retries of an infrastructure failure (seconds): `first`, doubling to `cap`."""

    first: float = 5.0
    cap: float = 300.0

    def retry(
        self,
        attempt: Callable[[], T],
        *,
        retryable: Callable[[Exception], bool],
        failed: Callable[[Exception, float], None],
        cancelled: threading.Event | None = None,
        what: str = "cancelled",
    ) -> T:
        """`attempt()` until it returns. A failure `retryable` accepts is told to `failed`
        with the pause to come and tried again after it; any other propagates.

        Raises Cancelled(`what`) when `cancelled` is set before a try, at a failure or
        during a pause (from the failure, if any).
        """
        stop = cancelled or threading.Event()
        pause = self.first
        while True:
            if stop.is_set():
                raise Cancelled(what)
            try:
                return attempt()
            except Exception as e:
                if not retryable(e):
                    raise
                if stop.is_set():
                    raise Cancelled(what) from e
                failed(e, pause)
                stop.wait(pause)
                pause = min(pause * 2, self.cap)
