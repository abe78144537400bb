"""The slots: worker threads that run frozen candidates, the queue that feeds them,
the GPUs each one leases per experiment, and how busy they were.

A slot takes a job (judge a frozen candidate, or confirm a rebased winner), leases
its GPUs (first come, first served, re-checked every time), judges it, records
the decision and hands the experiment's id back to the driver, which concludes it.
Candidates proposed before the baseline was measured wait for it: they are judged
against it.
"""

from __future__ import annotations

import itertools
import queue
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.contract.model import Contract
from orchestrator.errors import Cancelled
from orchestrator.executors import Executor
from orchestrator.gpus import Gpu, Leases, free
from orchestrator.ledger import Ledger
from orchestrator.night import Backoff, Event, Note
from orchestrator.night.judge import Judge, Verdict
from orchestrator.night.runner import Runner
from orchestrator.workspace import Workspace

JobKind = Literal["judge", "rebased", "stop"]
POLL_S = 1.0
"""How long the driver waits when no slot or proposer wakes it, before it looks at the clock."""


@dataclass(order=True)
class Job:
    priority: int
    """0 = a rebased winner's confirmation (first), 1 = a new candidate, 9 = stop."""
    seq: int
    exp_id: int = field(compare=False)
    kind: JobKind = field(compare=False)
    """"judge" (a frozen candidate), "rebased" (a stale winner on the new best) or "stop"."""


@dataclass
class Done:
    exp_id: int
    error: BaseException | None = None


class Slot:
    """One worker: its own runner and judge (its leased GPUs), and its busy time."""

    def __init__(self, index: int, runner: Runner, judge: Judge) -> None:
        self.index, self.runner, self.judge = index, runner, judge
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._since: float | None = None
        self._busy = 0.0
        self._reported = 0.0

    def busy(self, on: bool) -> None:
        with self._lock:
            now = time.monotonic()
            if on:
                self._since = now
            elif self._since is not None:
                self._busy += now - self._since
                self._since = None

    def take_busy(self) -> float:
        """Busy seconds since the last call (a run in progress counts up to now)."""
        with self._lock:
            total = self._busy + (time.monotonic() - self._since if self._since else 0.0)
            delta, self._reported = total - self._reported, total
            return delta


class Slots:
    """`count` workers over one executor; thread-safe where the driver and slots meet."""

    def __init__(
        self,
        *,
        contract: Contract,
        ledger: Ledger,
        workspace: Workspace,
        executor: Executor,
        leases: Leases | None,
        count: int,
        note: Note,
        event: Event,
        backoff: Backoff,
        wake: threading.Event | None = None,
    ) -> None:
        self.contract, self.ledger, self.leases = contract, ledger, leases
        self.wake = wake or threading.Event()
        """Set whenever a slot hands an experiment back: the driver waits on it."""
        self._runs: deque[float] = deque(maxlen=20)
        self.note, self.event = note, event
        self.backoff = backoff
        self.slots = []
        for i in range(count):
            runner = Runner(
                contract=contract,
                ws=workspace,
                executor=executor,
                ledger=ledger,
                note=note,
                backoff=backoff,
            )
            self.slots.append(Slot(i, runner, Judge(contract, ledger, runner)))
        self._jobs: queue.PriorityQueue[Job] = queue.PriorityQueue()
        self._done: queue.Queue[Done] = queue.Queue()
        self._seq = itertools.count()
        self.owned: set[int] = set()
        """Experiments queued or running in a slot now."""
        self._held: list[Job] = []
        """Candidates proposed before the baseline was measured; they run once it is."""
        self._tick_at = time.monotonic()
        self._lease_turn = threading.Condition()
        self._lease_line: list[int] = []
        """Experiments waiting for GPUs, in the order they asked."""

    def __len__(self) -> int:
        return len(self.slots)

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        self._tick_at = time.monotonic()
        for slot in self.slots:
            slot.runner.cancelled.clear()
            slot.thread = threading.Thread(
                target=self._work, args=(slot,), name=f"slot-{slot.index}", daemon=True
            )
            slot.thread.start()

    def stop(self) -> None:
        """Let every slot finish its job and end; forget what was queued (the ledger keeps it)."""
        for _ in self.slots:
            self._jobs.put(Job(9, next(self._seq), -1, "stop"))
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join(timeout=30)
        self.tick()
        self._jobs = queue.PriorityQueue()
        self._done = queue.Queue()
        self.owned.clear()
        self._held.clear()

    def cancel(self) -> None:
        """No more retries anywhere (the executor kills what runs)."""
        for slot in self.slots:
            slot.runner.cancelled.set()

    def tick(self) -> None:
        """Account the wall time since the last tick: active time, and each slot's duty."""
        now = time.monotonic()
        dt, self._tick_at = now - self._tick_at, now
        busy = sum(slot.take_busy() for slot in self.slots)
        self.ledger.add_active(dt)
        self.ledger.add_slot_time(len(self.slots), busy, dt * len(self.slots))

    # -- dispatch -----------------------------------------------------------
    def submit(self, exp_id: int, kind: JobKind) -> None:
        self.owned.add(exp_id)
        job = Job(0 if kind == "rebased" else 1, next(self._seq), exp_id, kind)
        base = self.ledger.get(0)
        if exp_id != 0 and (base is None or base.phase != "done"):
            self._held.append(job)  # judged against the baseline, so it waits for it
        else:
            self._jobs.put(job)

    def release_held(self) -> None:
        """The baseline is measured: what waited for it may run."""
        for job in self._held:
            self._jobs.put(job)
        self._held.clear()

    def run_s(self) -> float | None:
        """The median time a slot spent on one of its recent jobs; None before the first."""
        return statistics.median(self._runs) if self._runs else None

    def finished(self) -> list[int]:
        """The experiments the slots have decided since the last call (never waits: the
        driver waits on `wake`). Re-raises the first error a slot hit."""
        out: list[int] = []
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return out
            self.owned.discard(done.exp_id)
            if done.error is not None:
                raise done.error
            out.append(done.exp_id)

    # -- one slot's thread --------------------------------------------------
    def _work(self, slot: Slot) -> None:
        """Run jobs until told to stop; report each (or its error) to the driver."""
        while True:
            job = self._jobs.get()
            if job.kind == "stop":
                return
            began = time.monotonic()
            try:
                self._judge(slot, job)
                self._runs.append(time.monotonic() - began)
                self._done.put(Done(job.exp_id))
            except BaseException as e:  # handed to the driver, which decides what it means
                self._done.put(Done(job.exp_id, e))
            self.wake.set()

    def _judge(self, slot: Slot, job: Job) -> None:
        exp = self.ledger.get(job.exp_id)
        assert exp is not None and exp.phase in ("frozen", "running", "confirming"), exp
        leased = self.lease(slot, exp.id)
        try:
            slot.runner.gpus = tuple(g.uuid for g in leased)
            self.ledger.running(exp.id, slot.index)
            slot.busy(True)
            try:
                v = slot.judge.rebased(exp) if job.kind == "rebased" else slot.judge.judge(exp)
            finally:
                slot.busy(False)
        finally:
            self.give_back(leased)
        self.ledger.ran(exp.id)
        self._record(slot, exp.id, v)

    def _record(self, slot: Slot, exp_id: int, v: Verdict) -> None:
        d, r = v.decision, v.result
        self.ledger.decided(
            exp_id,
            status=d.status,
            reason=d.reason,
            metric=d.metric,
            metrics=v.metrics,
            result=r,
            samples=v.samples,
        )
        who = f"#{exp_id} " if len(self.slots) > 1 else ""
        # a win is not a keep until it merged: merges.py says how it ended
        said = "won, merging" if d.status == "keep" and exp_id > 0 else d.status
        self.note(
            "decided",
            f"  {who}→ {said}: {d.reason} ({r.wall_s:.1f} s)",
            experiment=exp_id,
            status=d.status,
            reason=d.reason,
            metric=d.metric,
            samples=v.samples,
            wall_s=r.wall_s,
            cpu_s=r.cpu_s,
            exit_code=r.exit_code,
            signal=r.signal,
            timed_out=r.timed_out,
            oom_killed=r.oom_killed,
            disk_full=r.disk_full,
            peak_memory_bytes=r.peak_memory_bytes,
            peak_vram_bytes=r.peak_vram_bytes,
            workspace_bytes=r.workspace_bytes,
            slot=slot.index,
            gpus=list(r.gpus or slot.runner.gpus),
            node=r.node,
        )

    # -- GPU leases ---------------------------------------------------------
    def lease(self, slot: Slot, exp_id: int) -> list[Gpu]:
        """The GPUs for one experiment, re-checked now; waits (never fails) while none are free.

        First come, first served: a slot that has waited is not overtaken by one that just asked.
        Raises Cancelled when the night is torn down while it waits.
        """
        want = self.contract.sandbox.gpus
        if not want or self.leases is None:
            return []
        with self._lease_turn:
            self._lease_line.append(exp_id)
        waited = False
        try:
            while True:
                got = self._try_lease(slot, exp_id, want)
                if got is not None:
                    return got
                if not waited:
                    self._say_waiting(exp_id, want)
                    waited = True
                with self._lease_turn:
                    self._lease_turn.wait(self.backoff.first)
                if slot.runner.cancelled.is_set():
                    raise Cancelled(f"experiment {exp_id} cancelled while waiting for a GPU")
        finally:
            with self._lease_turn:
                if exp_id in self._lease_line:
                    self._lease_line.remove(exp_id)
                    self._lease_turn.notify_all()

    def _try_lease(self, slot: Slot, exp_id: int, want: int) -> list[Gpu] | None:
        assert self.leases is not None
        with self._lease_turn:
            if self._lease_line[0] != exp_id:
                return None
            got = self.leases.acquire(want, holder=slot.index)
            if got is None:
                return None
            self._lease_line.remove(exp_id)
            self._lease_turn.notify_all()
        self.event("leased", experiment=exp_id, slot=slot.index, gpus=[g.uuid for g in got])
        return got

    def _say_waiting(self, exp_id: int, want: int) -> None:
        assert self.leases is not None
        leases = self.leases
        busy = "; ".join(
            f"GPU {g.index}: {why}"
            for g in leases.inventory.snapshot()
            if (why := free(g, set(), leases.policy))
        )
        self.note(
            "gpu-wait",
            f"  experiment {exp_id} waits for {want} free GPU(s)" + (f" ({busy})" if busy else ""),
            experiment=exp_id,
        )

    def give_back(self, leased: list[Gpu]) -> None:
        if leased and self.leases is not None:
            self.leases.release(leased)
            with self._lease_turn:
                self._lease_turn.notify_all()
