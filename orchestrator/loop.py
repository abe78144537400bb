"""The experiment loop: propose → freeze → run → measure → decide → record → merge.

Every step is written to the ledger before and after it happens, so `resume`
after a SIGKILL at any point continues from the exact phase it finds. A failure
of the infrastructure pauses and retries the same frozen candidate; it is never
recorded as the candidate's failure and never ends the night by itself.
"""

from __future__ import annotations

import errno
import fcntl
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agents import Agent, Context, Proposal
from orchestrator.agents.context import RECENT_FAILURES, TAIL_CHARS
from orchestrator.contract import Contract
from orchestrator.errors import InfraError, ProposalRefused, UserError
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


class Run:
    """One run (`tag`) of the loop over one repository."""

    def __init__(self, *, contract: Contract, ledger: Ledger, workspace: Workspace, sandbox: SandboxBackend,
                 agent: Agent, say: Say = print, backoff: Backoff | None = None) -> None:  # fmt: skip
        self.contract = contract
        self.ledger = ledger
        self.ws = workspace
        self.sandbox = sandbox
        self.agent = agent
        self.say = say
        self.backoff = backoff or Backoff()
        self.run_dir = ledger.dir
        self.events = EventLog(self.run_dir)
        self.runner = Runner(contract=contract, ws=workspace, sandbox=sandbox, ledger=ledger, note=self._note,
                             first_delay=self.backoff.first, max_delay=self.backoff.cap)  # fmt: skip
        self.judge = Judge(contract, ledger, self.runner)

    def _note(self, event: str, message: str, **fields: object) -> None:
        """One event: a JSON line in events.jsonl and a sentence on the terminal."""
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
        reaped = self.sandbox.reap()
        if reaped:
            self._note("reaped", f"removed {reaped} container(s) left by a dead run", count=reaped)
        self.ledger.set_stopped(None)
        pause = self.backoff.first
        while True:
            try:
                why = self._step()
                pause = self.backoff.first
            except (OSError, sqlite3.OperationalError) as e:
                if not _disk_full(e):
                    raise
                self._note("disk-full", f"disk full under {self.run_dir} ({e}) — free some space; the run "
                           f"continues by itself (next try in {pause:.0f} s)", error=str(e))  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 2, self.backoff.cap)
                continue
            if why is not None:
                break
        self.ledger.set_stopped(why)
        self.ledger.write_results_tsv()
        self._note("stopped", f"stopped: {why}", reason=why)
        return why

    def _step(self) -> str | None:
        """Advance the run by one experiment from what the ledger says; the stop reason when done.

        Every step starts by settling unfinished experiments, so a step interrupted
        (disk full, a kill) is simply taken again.
        """
        for exp in self.ledger.experiments():
            if exp.phase != "done":
                self._note("resume", f"resuming experiment {exp.id} from phase '{exp.phase}'",
                           experiment=exp.id, phase=exp.phase)  # fmt: skip
                self._finish(exp)
        if self.ledger.get(0) is None:
            self._baseline()
        base = self.ledger.get(0)
        assert base is not None
        if base.status != "keep":
            reason = f"baseline crashed ({base.reason}) — fix the evaluator or implementation; see {self.ledger.exp_dir(0)}/output.log"
            self.ledger.set_stopped(reason)
            self.events.event("stopped", reason=reason)
            raise UserError(reason)
        why = self._stop_reason()
        if why is None and not self._next():
            why = "the agent has nothing more to propose"
        return why

    def _stop_reason(self) -> str | None:
        info = self.ledger.run()
        active = info.active_s if info else 0.0
        return stop_reason(
            self.contract, self.ledger.experiments(), active, self.ledger.total_cost()
        )

    # -- one experiment ---------------------------------------------------
    def _baseline(self) -> None:
        best = self.ws.best()
        self.ledger.begin(0, best)
        self.ledger.frozen(
            0, best, "baseline", "the unmodified starting point", self.ws.lines_of_code(best)
        )
        self._note("experiment", "experiment 0: baseline", experiment=0, commit=best)
        exp = self.ledger.get(0)
        assert exp is not None
        self._finish(exp)

    def _next(self) -> bool:
        exps = self.ledger.experiments()
        n = exps[-1].id + 1
        best = self.ws.best()
        self.ledger.begin(n, best)
        t0 = time.monotonic()
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
        exp = self.ledger.get(n)
        assert exp is not None
        self._finish(exp)
        self.ledger.add_active(time.monotonic() - t0)
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

    def _finish(self, exp: Experiment) -> None:
        """Carry a frozen experiment through run, decision and merge (idempotent)."""
        if exp.phase == "proposing":
            # Killed while the agent worked: nothing ran; propose again under the same id.
            self.ledger.abandon(exp.id)
            return
        if exp.phase in ("frozen", "running"):
            self.ledger.running(exp.id)
            v = self.judge.judge(exp)
            d, r = v.decision, v.result
            self.ledger.decided(exp.id, status=d.status, reason=d.reason, metric=d.metric, metrics=v.metrics,
                                result=r, samples=v.samples)  # fmt: skip
            self._note("decided", f"  → {d.status}: {d.reason} ({r.wall_s:.1f} s)", experiment=exp.id,
                       status=d.status, reason=d.reason, metric=d.metric, samples=v.samples, wall_s=r.wall_s,
                       cpu_s=r.cpu_s, exit_code=r.exit_code, signal=r.signal, timed_out=r.timed_out,
                       oom_killed=r.oom_killed, disk_full=r.disk_full, peak_memory_bytes=r.peak_memory_bytes,
                       workspace_bytes=r.workspace_bytes)  # fmt: skip
            exp = self.ledger.get(exp.id)  # type: ignore[assignment]
        assert exp is not None
        if exp.phase == "decided":
            merged = self._merge(exp) if exp.status == "keep" and exp.id > 0 else None
            self.ledger.done(exp.id, merged=merged is not None, merged_sha=merged)
            if merged:
                self.events.event("merged", experiment=exp.id, commit=merged, branch=self.ws.branch)
        self.ledger.write_results_tsv()

    def _merge(self, exp: Experiment) -> str | None:
        """Fast-forward the run branch to the candidate's tree, with provenance trailers.

        Idempotent: a merge that happened before a crash is recognised, never repeated.
        """
        assert exp.commit_sha is not None
        head = self.ws.best()
        if self.ws.is_merge_of(head, exp.commit_sha, exp.parent):
            return head
        if head != exp.parent:
            self.ledger.event(
                "merge-skipped", f"branch moved to {head[:12]}; expected {exp.parent[:12]}", exp.id
            )
            return None
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
