"""The experiment loop: propose → freeze → run → measure → decide → record → merge.

One driver thread owns the agent, the merges and the stop rules; N worker slots
run frozen candidates in sandboxes (each slot leases its GPUs per experiment).
The agent prepares up to `budget.pipeline` candidates ahead of a free slot, so a
slot never waits for it to think. Every candidate forks from the best at the
time it is proposed; a winner whose base went stale is rebased onto the new best
and must win again there before it merges (a conflict discards it). Merges are
serialised in the driver.

Every step is written to the ledger before and after it happens, so `resume`
after a SIGKILL at any point continues from the exact phase it finds. A failure
of the infrastructure pauses and retries the same frozen candidate; it is never
recorded as the candidate's failure and never ends the night by itself.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.agents import Agent, Context, Proposal
from orchestrator.agents.context import RECENT_FAILURES, TAIL_CHARS
from orchestrator.contract import Contract
from orchestrator.errors import Cancelled, InfraError, ProposalRefused, UserError
from orchestrator.executor import RunFiles, executor_for
from orchestrator.gpus import Gpu, GpuInventory, LeasePolicy, Leases, NvmlInventory, free
from orchestrator.judge import Judge
from orchestrator.ledger import Experiment, Ledger
from orchestrator.logs import EventLog
from orchestrator.runner import Runner
from orchestrator.sandbox import SandboxBackend
from orchestrator.sandbox.disk import unmount_below
from orchestrator.stops import stop_reason
from orchestrator.workspace import Workspace, remove_tree

Say = Callable[[str], None]


@dataclass
class Backoff:
    """Pauses between retries of an infrastructure failure (seconds)."""

    first: float = 5.0
    cap: float = 300.0


def _disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(e) or "disk I/O error" in str(e)


POLL_S = 1.0
"""How often the driver wakes while it waits (for accounting and stop rules)."""
MAX_REBASES = 3
"""A winner whose base keeps moving is rebased at most this many times."""


@dataclass(order=True)
class _Job:
    priority: int
    """0 = a rebased winner's confirmation (first), 1 = a new candidate."""
    seq: int
    exp_id: int = field(compare=False)
    kind: str = field(compare=False)
    """"judge" (a frozen candidate), "rebased" (a stale winner on the new best) or "stop"."""


@dataclass
class _Done:
    exp_id: int
    error: BaseException | None = None


class _Slot:
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


def lease_policy(contract: Contract) -> LeasePolicy:
    g = contract.gpus
    return LeasePolicy(
        g.max_memory_used, g.max_utilization, tuple(g.pin) if g.pin is not None else None
    )


def default_parallel(contract: Contract, inventory: GpuInventory | None) -> int:
    """One slot per leasable group of `sandbox.gpus` GPUs; without GPUs, cores / `sandbox.cpus`."""
    s = contract.sandbox
    if s.gpus:
        policy = lease_policy(contract)
        gpus = inventory.snapshot() if inventory else []
        return max(1, sum(free(g, set(), policy) is None for g in gpus) // s.gpus)
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, int(cores // s.cpus))


class Run:
    """One run (`tag`) of the loop over one repository."""

    def __init__(self, *, contract: Contract, ledger: Ledger, workspace: Workspace, sandbox: SandboxBackend | None,
                 agent: Agent, say: Say = print, backoff: Backoff | None = None,
                 inventory: GpuInventory | None = None) -> None:  # fmt: skip
        self.contract = contract
        self.ledger = ledger
        self.ws = workspace
        self.sandbox = sandbox
        self.agent = agent
        self.say = say
        self.backoff = backoff or Backoff()
        self.run_dir = ledger.dir
        self.events = EventLog(self.run_dir)
        self._say_lock = threading.Lock()
        files = RunFiles(workspace.tag, self.run_dir, workspace.root)
        self.executor = executor_for(contract, sandbox, files, self._leftover)
        if self.executor.assigns_gpus:
            inventory = None  # the cluster picks each experiment's GPUs
        elif inventory is None and contract.sandbox.gpus:
            inventory = NvmlInventory()
        self.inventory = inventory
        self.leases = Leases(inventory, lease_policy(contract)) if inventory is not None else None
        in_turn = bool(getattr(agent, "in_turn", False))
        b = contract.budget
        self.parallel = b.parallel or (
            1 if in_turn else self.executor.slots(contract) or default_parallel(contract, inventory)
        )
        self.pipeline = b.pipeline if b.pipeline is not None else (0 if in_turn else 1)
        self.slots = [self._slot(i) for i in range(self.parallel)]
        self.runner, self.judge = self.slots[0].runner, self.slots[0].judge
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._done: queue.Queue[_Done] = queue.Queue()
        self._seq = itertools.count()
        self._owned: set[int] = set()
        """Experiments queued or running in a slot now."""
        self._held: list[_Job] = []
        """Candidates proposed before the baseline was measured; they run once it is."""
        self._tick_at = time.monotonic()
        self._lease_turn = threading.Condition()
        self._lease_line: list[int] = []
        """Experiments waiting for GPUs, in the order they asked."""

    def _slot(self, index: int) -> _Slot:
        runner = Runner(contract=self.contract, ws=self.ws, executor=self.executor, ledger=self.ledger,
                        note=self._note, first_delay=self.backoff.first, max_delay=self.backoff.cap)  # fmt: skip
        return _Slot(index, runner, Judge(self.contract, self.ledger, runner))

    def _leftover(self, folder: Path, e: OSError) -> None:
        self.ledger.event("leftover", f"{folder}: {e}")

    def _note(self, event: str, message: str, **fields: object) -> None:
        """One event: a JSON line in events.jsonl and a sentence on the terminal."""
        with self._say_lock:
            self.events.event(event, message=message, **fields)
            self.say(message)

    # -- the night --------------------------------------------------------
    def execute(self) -> str:
        """Run until a stop rule fires; return why it stopped.

        Raises UserError when another process is already running this run.
        """
        lock = (self.run_dir / "lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"run {self.ws.tag} is already running in another process — wait for it or kill it"
            ) from None
        try:
            return self._execute()
        finally:
            lock.close()

    def _execute(self) -> str:
        box = self.run_dir / "sandbox"
        unmount_below(box)  # a killed run's workspace filesystems
        remove_tree(box)
        reaped = self.executor.reap()
        if reaped:
            self._note("reaped", f"removed {reaped} container(s) left by a dead run", count=reaped)
        self._check_gpus()
        self.executor.check(self.contract)
        self.ledger.set_stopped(None)
        if self.parallel > 1 or self.contract.sandbox.gpus:
            gpus = (
                f", {self.contract.sandbox.gpus} GPU(s) each" if self.contract.sandbox.gpus else ""
            )
            self._note("slots", f"{self.parallel} experiment slot(s){gpus}; the agent works "
                       f"{self.pipeline} ahead", slots=self.parallel)  # fmt: skip
        self._start_slots()
        try:
            pause = self.backoff.first
            while True:
                try:
                    why = self._night()
                    break
                except (OSError, sqlite3.OperationalError) as e:
                    if not _disk_full(e):
                        raise
                    self._note("disk-full", f"disk full under {self.run_dir} ({e}) — free some space; the run "
                               f"continues by itself (next try in {pause:.0f} s)", error=str(e))  # fmt: skip
                    time.sleep(pause)
                    pause = min(pause * 2, self.backoff.cap)
        except BaseException:
            self._cancel()
            raise
        finally:
            self._stop_slots()
            self.executor.reopen()  # the slots have stopped: nothing is left to refuse
            self.executor.close()
        self.ledger.set_stopped(why)
        self.ledger.write_results_tsv()
        self._note("stopped", f"stopped: {why}", reason=why)
        return why

    def _check_gpus(self) -> None:
        want = self.contract.sandbox.gpus
        if not want or self.executor.assigns_gpus:
            return
        have = self.inventory.snapshot() if self.inventory else []
        if len(have) < want:
            why = getattr(self.inventory, "error", None)
            raise UserError(
                f"sandbox.gpus = {want} but this machine has {len(have)} GPU(s)"
                + (f" (NVML: {why})" if why else "")
                + " — lower sandbox.gpus or run on a GPU box (`autoresearch doctor` checks NVML)"
            )

    def _start_slots(self) -> None:
        self._tick_at = time.monotonic()
        for slot in self.slots:
            slot.runner.cancelled.clear()
            slot.thread = threading.Thread(target=self._work, args=(slot,), name=f"slot-{slot.index}",
                                           daemon=True)  # fmt: skip
            slot.thread.start()

    def _stop_slots(self) -> None:
        for _ in self.slots:
            self._jobs.put(_Job(9, next(self._seq), -1, "stop"))
        for slot in self.slots:
            if slot.thread is not None:
                slot.thread.join(timeout=30)
        self._tick()
        self._jobs = queue.PriorityQueue()
        self._done = queue.Queue()
        self._owned.clear()
        self._held.clear()

    def _cancel(self) -> None:
        """Tear down: no more retries anywhere, and every running container is killed."""
        for slot in self.slots:
            slot.runner.cancelled.set()
        self.executor.cancel()

    def _night(self) -> str:
        """Propose, dispatch and conclude experiments until a stop rule fires and the slots are idle."""
        self._settle()
        if self.ledger.get(0) is None:
            self._baseline()
        exhausted: str | None = None
        while True:
            self._tick()
            self._collect(block=False)
            why = self._stop_reason() or exhausted
            if why is not None:
                if not self._owned:
                    return why
                self._collect(block=True)
            elif len(self._owned) < self.parallel + self.pipeline:
                if not self._next():
                    exhausted = "the agent has nothing more to propose"
            else:
                self._collect(block=True)

    def _tick(self) -> None:
        """Account the wall time since the last tick: active time, and each slot's duty."""
        now = time.monotonic()
        dt, self._tick_at = now - self._tick_at, now
        busy = sum(slot.take_busy() for slot in self.slots)
        self.ledger.add_active(dt)
        self.ledger.add_slot_time(len(self.slots), busy, dt * len(self.slots))

    def _settle(self) -> None:
        """Take up every unfinished experiment no slot is working on (after a crash or a pause)."""
        for exp in self.ledger.experiments():
            if exp.phase == "done" or exp.id in self._owned:
                continue
            self._note("resume", f"resuming experiment {exp.id} from phase '{exp.phase}'",
                       experiment=exp.id, phase=exp.phase)  # fmt: skip
            if exp.phase == "proposing":
                # Killed while the agent worked: nothing ran; propose again under the same id.
                self.ledger.abandon(exp.id)
            elif exp.phase in ("frozen", "running"):
                self._submit(exp.id, "judge")
            elif exp.phase == "confirming":
                self._submit(exp.id, "rebased")
            else:
                self._conclude(exp)

    def _stop_reason(self) -> str | None:
        base = self.ledger.get(0)
        if base is not None and base.phase == "done" and base.status != "keep":
            reason = f"baseline crashed ({base.reason}) — fix the evaluator or implementation; see {self.ledger.exp_dir(0)}/output.log"
            self.ledger.set_stopped(reason)
            self.events.event("stopped", reason=reason)
            raise UserError(reason)
        info = self.ledger.run()
        active = info.active_s if info else 0.0
        return stop_reason(
            self.contract, self.ledger.experiments(), active, self.ledger.total_cost()
        )

    # -- dispatch ---------------------------------------------------------
    def _submit(self, exp_id: int, kind: str) -> None:
        self._owned.add(exp_id)
        job = _Job(0 if kind == "rebased" else 1, next(self._seq), exp_id, kind)
        base = self.ledger.get(0)
        if exp_id != 0 and (base is None or base.phase != "done"):
            self._held.append(job)  # judged against the baseline, so it waits for it
        else:
            self._jobs.put(job)

    def _collect(self, *, block: bool) -> None:
        """Conclude every experiment a slot has finished (waiting up to POLL_S for one if `block`)."""
        try:
            done = self._done.get(timeout=POLL_S) if block else self._done.get_nowait()
        except queue.Empty:
            return
        while True:
            self._owned.discard(done.exp_id)
            if done.error is not None:
                raise done.error
            exp = self.ledger.get(done.exp_id)
            assert exp is not None
            self._conclude(exp)
            if exp.id == 0:
                for job in self._held:
                    self._jobs.put(job)
                self._held.clear()
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return

    def _work(self, slot: _Slot) -> None:
        """A slot's thread: run jobs until told to stop; report each (or its error) to the driver."""
        while True:
            job = self._jobs.get()
            if job.kind == "stop":
                return
            try:
                self._run_job(slot, job)
                self._done.put(_Done(job.exp_id))
            except BaseException as e:  # handed to the driver, which decides what it means
                self._done.put(_Done(job.exp_id, e))

    def _run_job(self, slot: _Slot, job: _Job) -> None:
        exp = self.ledger.get(job.exp_id)
        assert exp is not None and exp.phase in ("frozen", "running", "confirming"), exp
        leased = self._lease(slot, exp.id)
        try:
            slot.runner.gpus = tuple(g.uuid for g in leased)
            self.ledger.running(exp.id, slot.index)
            slot.busy(True)
            try:
                v = slot.judge.rebased(exp) if job.kind == "rebased" else slot.judge.judge(exp)
            finally:
                slot.busy(False)
        finally:
            if leased and self.leases is not None:
                self.leases.release(leased)
                with self._lease_turn:
                    self._lease_turn.notify_all()
        self.ledger.ran(exp.id)
        d, r = v.decision, v.result
        self.ledger.decided(exp.id, status=d.status, reason=d.reason, metric=d.metric, metrics=v.metrics,
                            result=r, samples=v.samples)  # fmt: skip
        who = f"#{exp.id} " if self.parallel > 1 else ""
        self._note("decided", f"  {who}→ {d.status}: {d.reason} ({r.wall_s:.1f} s)", experiment=exp.id,
                   status=d.status, reason=d.reason, metric=d.metric, samples=v.samples, wall_s=r.wall_s,
                   cpu_s=r.cpu_s, exit_code=r.exit_code, signal=r.signal, timed_out=r.timed_out,
                   oom_killed=r.oom_killed, disk_full=r.disk_full, peak_memory_bytes=r.peak_memory_bytes,
                   peak_vram_bytes=r.peak_vram_bytes, workspace_bytes=r.workspace_bytes, slot=slot.index,
                   gpus=list(r.gpus or slot.runner.gpus), node=r.node)  # fmt: skip

    def _lease(self, slot: _Slot, exp_id: int) -> list[Gpu]:
        """The GPUs for one experiment, re-checked now; waits (never fails) while none are free.

        First come, first served: a slot that has waited is not overtaken by one that just asked.
        """
        want = self.contract.sandbox.gpus
        if not want or self.leases is None:
            return []
        leases = self.leases
        with self._lease_turn:
            self._lease_line.append(exp_id)
        waited = False
        try:
            while True:
                with self._lease_turn:
                    got = (
                        leases.acquire(want, holder=slot.index)
                        if self._lease_line[0] == exp_id
                        else None
                    )
                    if got is not None:
                        self._lease_line.remove(exp_id)
                        self._lease_turn.notify_all()
                        self.events.event(
                            "leased", experiment=exp_id, slot=slot.index, gpus=[g.uuid for g in got]
                        )
                        return got
                if not waited:
                    busy = "; ".join(f"GPU {g.index}: {why}" for g in leases.inventory.snapshot()
                                     if (why := free(g, set(), leases.policy)))  # fmt: skip
                    self._note("gpu-wait", f"  experiment {exp_id} waits for {want} free GPU(s)"
                               + (f" ({busy})" if busy else ""), experiment=exp_id)  # fmt: skip
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

    def lease_for_verify(self) -> list[Gpu]:
        """`verify`: lease slot 0's GPUs outside a night (the run must not be running)."""
        self._check_gpus()
        leased = self._lease(self.slots[0], -1)
        self.runner.gpus = tuple(g.uuid for g in leased)
        return leased

    def release(self, leased: list[Gpu]) -> None:
        if leased and self.leases is not None:
            self.leases.release(leased)
        self.runner.gpus = ()

    # -- one experiment ---------------------------------------------------
    def _baseline(self) -> None:
        best = self.ws.best()
        self.ledger.begin(0, best)
        self.ledger.frozen(
            0, best, "baseline", "the unmodified starting point", self.ws.lines_of_code(best)
        )
        self._note("experiment", "experiment 0: baseline", experiment=0, commit=best)
        self._submit(0, "judge")

    def _next(self) -> bool:
        """Ask the agent for one candidate forked from the best now; freeze and dispatch it."""
        exps = self.ledger.experiments()
        n = exps[-1].id + 1
        best = self.ws.best()
        self.ledger.begin(n, best)
        scratch = self.run_dir / "scratch" / f"{n:04d}"
        remove_tree(scratch)
        self.ws.export(best, scratch)
        try:
            proposal = self._propose(n, best, exps, scratch)
            if proposal is None:
                self.ledger.abandon(n)
                return False
            self.ledger.cost(n, proposal.cost_usd, proposal.usage)
            try:
                commit, diff = self.ws.freeze(scratch, best, proposal.description, n)
            except ProposalRefused as e:
                (self.ledger.exp_dir(n) / "refused.txt").write_text(e.reason + "\n")
                self._refuse(n, e.reason, description=proposal.description)
                return True
        except ProposalRefused as e:
            self.ledger.cost(n, e.cost_usd, e.usage)
            self._refuse(n, e.reason, description=e.description or "(no proposal)")
            return True
        finally:
            remove_tree(scratch)
        self.ledger.frozen(
            n, commit, proposal.description, proposal.hypothesis, self.ws.lines_of_code(commit)
        )
        (self.ledger.exp_dir(n) / "diff.patch").write_text(diff)
        self._note(
            "experiment",
            f"experiment {n}: {proposal.description}",
            experiment=n,
            commit=commit,
            description=proposal.description,
        )
        self._submit(n, "judge")
        return True

    def _propose(self, n: int, best: str, exps: list[Experiment], scratch: Path) -> Proposal | None:
        """Ask the agent; an outage of its backend pauses here (never the candidate's failure)."""
        tails = {}
        for e in [e for e in exps if e.status == "crash"][
            -RECENT_FAILURES:
        ]:  # only what agents are shown
            log = self.ledger.exp_dir(e.id) / "output.log"
            if log.exists():
                tails[e.id] = log.read_text(errors="replace")[-2 * TAIL_CHARS :]
        ctx = Context(n, self.contract, self._direction(), best, exps, self.ws.implementation_files(best), tails,
                      self.run_dir)  # fmt: skip
        delay = self.backoff.first
        while True:
            try:
                return self.agent.propose(ctx, scratch)
            except InfraError as e:
                self._note("agent-unavailable", f"  the agent's backend is unavailable: {e} — retrying in {delay:.0f} s",
                           experiment=n, error=str(e), retry_in_s=delay)  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, self.backoff.cap)
                remove_tree(scratch)
                self.ws.export(best, scratch)

    def _refuse(self, n: int, reason: str, *, description: str) -> None:
        self._note("refused", f"experiment {n}: refused — {reason}", experiment=n, reason=reason)
        self.ledger.decided(n, status="refused", reason=reason, description=description)
        self.ledger.done(n, merged=False)
        self.ledger.write_results_tsv()

    def _conclude(self, exp: Experiment) -> None:
        """Carry a decided experiment to `done`: merge a winner (rebasing a stale one) (idempotent)."""
        if exp.phase != "decided":
            return
        merged = None
        if exp.status == "keep" and exp.id > 0:
            assert exp.commit_sha is not None
            head = self.ws.best()
            if self.ws.is_merge_of(head, exp.commit_sha, exp.parent):
                merged = head
            elif head != exp.parent:
                if self._rebase(exp, head):
                    return
            else:
                merged = self._merge(exp)
        self.ledger.done(exp.id, merged=merged is not None, merged_sha=merged)
        if merged:
            self.events.event("merged", experiment=exp.id, commit=merged, branch=self.ws.branch)
        self.ledger.write_results_tsv()

    def _rebase(self, exp: Experiment, head: str) -> bool:
        """A winner forked from an older best: replay it on `head` and confirm it there.

        True when a confirmation is dispatched; False when it was overturned (a
        conflict, or the best moved too often) and is a discard now.
        """
        assert exp.commit_sha is not None
        landed = set(self.ws.git("rev-list", f"{exp.parent}..{head}").decode().split())
        since = ", ".join(f"#{e.id}" for e in self.ledger.experiments() if e.merged_sha in landed)
        if exp.rebases >= MAX_REBASES:
            why = f"won, but the best moved {MAX_REBASES + 1} times while it ran (last: {since})"
        elif (rebased := self.ws.rebase(exp.commit_sha, head, exp.id)) is None:
            why = (
                f"won, but its change conflicts with {since or 'the new best'}, merged while it ran"
            )
        else:
            commit, diff = rebased
            (self.ledger.exp_dir(exp.id) / f"diff.rebased.{exp.rebases + 1}.patch").write_text(diff)
            self.ledger.rebased(exp.id, commit, head)
            self._note("rebased", f"experiment {exp.id} won on a stale base: rebased onto {since} "
                       f"({head[:12]}); confirming it there", experiment=exp.id, commit=commit,
                       onto=head)  # fmt: skip
            self._submit(exp.id, "rebased")
            return True
        self.ledger.overturned(exp.id, why)
        self._note(
            "overturned", f"experiment {exp.id}: discard — {why}", experiment=exp.id, reason=why
        )
        return False

    def _merge(self, exp: Experiment) -> str:
        """Fast-forward the run branch (at the candidate's parent) to its tree, with provenance trailers."""
        assert exp.commit_sha is not None
        base = self.ledger.get(0)
        info = self.ledger.run()
        assert (
            base is not None
            and base.metric is not None
            and exp.metric is not None
            and info is not None
        )
        trailers = {
            "Autoresearch-Experiment": str(exp.id),
            "Autoresearch-Metric": f"{self.contract.metric.name}={exp.metric:.6g}",
            "Autoresearch-Baseline": f"{base.metric:.6g}",
            "Autoresearch-Delta": f"{exp.metric - base.metric:+.6g}",
            "Autoresearch-Noise-Band": f"{self.judge.band():.6g}",
            "Autoresearch-Image": info.image_id or self.contract.sandbox.image,
            "Autoresearch-Evaluator": info.evaluator_hash,
        }
        return self.ws.merge(exp.commit_sha, exp.parent, exp.description, exp.hypothesis, trailers)

    def _direction(self) -> str:
        d = self.contract.direction
        path = self.run_dir / "direction.md"
        if path.exists():
            return path.read_text()
        return (self.ws.root / d).read_text() if d else ""
