"""A daemon thread that polls something until told to stop (stdlib only).

Samplers and watchdogs share this shape: start with the thing they watch, poll
at an interval, stop (and join, with a deadline) when it ends.
"""

from __future__ import annotations

import threading
from typing import Self


class Poller:
    """Subclasses implement `poll()`; returning False ends the polling early."""

    def __init__(
        self,
        interval: float,
        name: str,
        *,
        growth: float = 1.0,
        start_interval: float | None = None,
    ):
        self._interval = start_interval if start_interval is not None else interval
        self._max_interval = interval
        self._growth = growth
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def poll(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.poll() is False:
                return
            self._stop.wait(self._interval)
            self._interval = min(self._interval * self._growth, self._max_interval)
