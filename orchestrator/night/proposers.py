"""Proposers: several proposals prepared at once, so no slot waits for the agent to think.

Each proposal runs in a thread of its own (`Proposals.make`): its own scratch copy
forked from the best when it started, its own conversation or process. The
driver never blocks on one: it starts them, collects what they made whenever
it looks, and keeps merging and dispatching meanwhile. How many run at once
follows how long the agent thinks against how long an experiment runs (`capacity`),
from evidence only: until `EVIDENCE` proposals have ended, one per slot plus the
pipeline (a proposal still running says only that it takes at least its age; read
as a think time, that age made a night start four proposals per slot before any
had ended). The think time is the agent's own (its process, when it says), apart
from starting its container and waiting its turn; a start that takes far longer
than the quickest recent one means the host is busy, and no proposer is added
until starts are quick again.
"""

from __future__ import annotations

import math
import queue
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass

from orchestrator.night.proposals import Proposals, Proposed

MARGIN = 1.25
"""Proposals started beyond the exact balance of thinking and running: their times vary."""
RECENT = 20
"""How many recent proposals (and experiments) the think-time estimate looks at."""
EVIDENCE = 3
"""Proposals that must have ended before more than one per slot (plus the pipeline) run."""
CONTENDED = 2.0
"""A recent start this many times the quickest one (and half a second more): the host is busy
starting agents, so none is added until starts are quick again."""


@dataclass(frozen=True)
class Made:
    """A proposal that ended: what it made (None: the agent had nothing more), or its error."""

    exp_id: int
    proposed: Proposed | None
    error: BaseException | None = None


class Proposers:
    """The proposals in flight; thread-safe where the driver and the proposer threads meet."""

    def __init__(self, proposals: Proposals, wake: threading.Event) -> None:
        self.proposals, self.wake = proposals, wake
        self.cancelled = threading.Event()
        self.in_flight: dict[int, threading.Thread] = {}
        self._made: queue.Queue[Made] = queue.Queue()
        self._think: deque[float] = deque(maxlen=RECENT)
        self._start: deque[float] = deque(maxlen=RECENT)
        self._cost: deque[float] = deque(maxlen=RECENT)
        self._began: dict[int, float] = {}
        self._lock = threading.Lock()
        self.ended = 0
        self.peak = 0
        """The most proposals in flight at once, so far."""
        self.peak_early = 0
        """The most in flight before `EVIDENCE` proposals had ended."""
        self._hold: int | None = None

    def start(self, exp_id: int) -> None:
        """Make experiment `exp_id`'s proposal (its row is `proposing`) in a thread of its own."""
        self.cancelled.clear()
        t = threading.Thread(
            target=self._make, args=(exp_id,), name=f"proposer-{exp_id}", daemon=True
        )
        self.in_flight[exp_id] = t
        self._began[exp_id] = time.monotonic()
        with self._lock:
            self.peak = max(self.peak, len(self.in_flight))
            if self.ended < EVIDENCE:
                self.peak_early = max(self.peak_early, len(self.in_flight))
        t.start()

    def _make(self, exp_id: int) -> None:
        began = time.monotonic()
        try:
            made = Made(exp_id, self.proposals.make(exp_id, self.cancelled))
            total = time.monotonic() - began
            agent_s = made.proposed.agent_s if made.proposed is not None else None
            with self._lock:
                self._think.append(total if agent_s is None else min(agent_s, total))
                if agent_s is not None:
                    self._start.append(max(0.0, total - agent_s))
        except BaseException as e:  # handed to the driver, which decides what it means
            made = Made(exp_id, None, e)
        with self._lock:
            self.ended += 1
        self._made.put(made)
        self.wake.set()

    def collect(self) -> list[Made]:
        """The proposals that ended since the last call (never waits)."""
        out: list[Made] = []
        while True:
            try:
                made = self._made.get_nowait()
            except queue.Empty:
                return out
            self.in_flight.pop(made.exp_id, None)
            self._began.pop(made.exp_id, None)
            out.append(made)

    def cancel(self) -> None:
        """Stop every proposal in flight: their processes are killed, their retries end."""
        self.cancelled.set()
        self.proposals.agent.cancel()

    def close(self) -> None:
        """The night is over, nothing is in flight: what the agent made ahead for proposals
        to come (its containers) is removed, as a cancel removes it."""
        self.proposals.agent.cancel()

    # -- how many at once ---------------------------------------------------
    def think_s(self) -> float | None:
        """How long a proposal takes once its agent runs (the median of the recent ones) plus
        the quickest recent start; None until `EVIDENCE` proposals have ended."""
        with self._lock:
            if self.ended < EVIDENCE or not self._think:
                return None
            return statistics.median(self._think) + (min(self._start) if self._start else 0.0)

    def room(self, in_flight: int) -> bool:
        """False while starts are slow (the host is busy starting agents) and `in_flight` has
        reached what ran when they were quick: hold, never grow, until they are quick again."""
        with self._lock:
            recent = list(self._start)[-EVIDENCE:]
            quickest = min(self._start) if self._start else 0.0
        if len(recent) < EVIDENCE or statistics.median(recent) <= CONTENDED * quickest + 0.5:
            self._hold = None
            return True
        if self._hold is None:
            self._hold = in_flight
        return in_flight < self._hold

    def cost_each(self) -> float:
        """What a recent proposal cost on average (0 until one reported a cost)."""
        return statistics.fmean(self._cost) if self._cost else 0.0

    def spent(self, cost_usd: float | None) -> None:
        if cost_usd is not None:
            self._cost.append(cost_usd)


def capacity(slots: int, pipeline: int, think_s: float | None, run_s: float | None) -> int:
    """How many experiments may be owned by the slots and in flight with the agent together:
    one per slot plus `pipeline` ahead, and (unless `pipeline` is 0: strictly when a slot is
    idle), while the agent thinks longer than an experiment
    runs, one more (and a margin) for every slot that frees up during one proposal (at most
    4 per slot)."""
    extra = 0
    if pipeline and think_s is not None and run_s:  # pipeline 0: only when a slot is idle
        extra = min(4 * slots, math.ceil(MARGIN * slots * think_s / run_s))
    return slots + pipeline + extra
