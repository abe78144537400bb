"""The driver: one night of one run, from start-up to a stop rule.

One driver thread owns the merges and the stop rules; N worker slots (`slots.py`)
run frozen candidates in sandboxes; several proposals are prepared at once, each
in its own thread (`proposers.py`), enough that no slot waits for the agent to
think. The driver never blocks on an agent: it wakes whenever a slot or a
proposer hands something back. Every candidate forks from the best at the time
its proposal started (`proposals.py`); a winner whose base went stale is rebased
onto the new best and must win again there before it merges (`merges.py`).
Merges are serialised here.

Every step is written to the ledger before and after it happens, so `resume`
after a SIGKILL at any point continues from the exact phase it finds. A failure
of the infrastructure pauses and retries the same frozen candidate; it is never
recorded as the candidate's failure and never ends the night by itself.
"""

from __future__ import annotations

import errno
import fcntl
import sqlite3
import threading

from orchestrator import sanitize
from orchestrator.agents import Agent
from orchestrator.agents.command import reap_commands
from orchestrator.contract.model import Contract
from orchestrator.errors import EngineUnavailable, InfraError, UserError
from orchestrator.executors import Executor
from orchestrator.experiment import Experiment
from orchestrator.folders import remove_tree
from orchestrator.gpus import GpuInventory
from orchestrator.ledger import Ledger
from orchestrator.logs import EventLog
from orchestrator.night import Backoff, Say
from orchestrator.night.judge import Judge
from orchestrator.night.merges import Merges
from orchestrator.night.proposals import Proposals
from orchestrator.night.proposers import Proposers, capacity
from orchestrator.night.runner import Runner
from orchestrator.night.sizes import check_gpus, gpu_inventory, gpu_leases, sizes
from orchestrator.night.slots import POLL_S, Slots
from orchestrator.night.stops import stop_reason
from orchestrator.sandbox.disk import unmount_below
from orchestrator.workspace import Workspace


def _disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return "disk is full" in str(e) or "disk I/O error" in str(e)


class Night:
    """The nights of one run (`tag`) over one repository: `execute()` runs one to its end."""

    def __init__(
        self,
        *,
        contract: Contract,
        ledger: Ledger,
        workspace: Workspace,
        executor: Executor,
        agent: Agent,
        say: Say = print,
        backoff: Backoff | None = None,
        inventory: GpuInventory | None = None,
    ) -> None:
        self.contract, self.ledger, self.ws = contract, ledger, workspace
        self.executor, self.say = executor, say
        self.backoff = backoff or Backoff()
        self.run_dir = ledger.dir
        self.events = EventLog(self.run_dir)
        self._say_lock = threading.Lock()
        self.inventory = gpu_inventory(contract, executor, inventory)
        self.leases = gpu_leases(contract, self.inventory)
        self.parallel, self.pipeline, self.most_proposers = sizes(
            contract, executor, agent, self.inventory
        )
        self.in_turn = agent.in_turn
        self.wake = threading.Event()
        """Set when a slot or a proposer hands something back: the driver's loop waits on it."""
        self.slots = Slots(
            contract=contract,
            ledger=ledger,
            workspace=workspace,
            executor=executor,
            leases=self.leases,
            count=self.parallel,
            note=self.note,
            event=self.events.event,
            wake=self.wake,
            backoff=self.backoff,
        )
        self.runner: Runner = self.slots.slots[0].runner
        self.judge: Judge = self.slots.slots[0].judge
        self.proposals = Proposals(contract=contract, ledger=ledger, workspace=workspace,
                                   agent=agent, note=self.note, backoff=self.backoff)  # fmt: skip
        self.proposers = Proposers(self.proposals, self.wake)
        self.exhausted: str | None = None
        self._paused = False
        reapply = getattr(agent, "reapply", None)  # an agent whose change is an assignment
        self.merges = Merges(contract=contract, ledger=ledger, workspace=workspace,
                             note=self.note, band=self.judge.band, reapply=reapply)  # fmt: skip

    def note(self, event: str, message: str, **fields: object) -> None:
        """One event: a JSON line in events.jsonl and a sentence on the terminal."""
        with self._say_lock:
            self.events.event(event, message=message, **fields)
            self.say(sanitize.terminal(message))  # sentences quote agents' and candidates' text

    # -- the lifecycle ------------------------------------------------------
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
        self._start_up()
        self.slots.start()
        try:
            why = self._night_through_full_disks()
        except BaseException:
            self.cancel()
            raise
        finally:
            self.slots.stop()
            self.proposers.close()
            self.executor.reopen()  # the slots have stopped: nothing is left to refuse
            self.executor.close()
        self.ledger.set_stopped(why)
        self.ledger.write_results_tsv()
        self.note("stopped", f"stopped: {why}", reason=why)
        return why

    def _start_up(self) -> None:
        """Clear what a killed night left, check the machine, say how the night runs."""
        cleared = self.ws.clear_stale_locks()  # a kill during a ref update leaves its lock
        if cleared:
            self.note(
                "locks", f"removed {cleared} stale git lock(s) a killed run left", count=cleared
            )
        box = self.run_dir / "sandbox"
        unmount_below(box)  # a killed run's workspace filesystems
        remove_tree(box)
        try:
            reaped = self.executor.reap()
        except InfraError as e:  # at the start nothing is ours to retry: one line, no traceback
            raise EngineUnavailable(f"{e} — is the Docker engine up? (`make engine`)") from None
        if reaped:
            self.note("reaped", f"removed {reaped} container(s) left by a dead run", count=reaped)
        stray = reap_commands(self.run_dir)
        if stray:
            self.note("reaped", f"killed {stray} agent process(es) left by a dead run", count=stray)
        check_gpus(self.contract, self.inventory)
        self.executor.check(self.contract)
        self.ledger.set_stopped(None)
        self.ledger.write_results_tsv()  # a kill mid-append: the file made to match the ledger
        if self.parallel > 1 or self.contract.sandbox.gpus:
            gpus = self.contract.sandbox.gpus
            each = f", {gpus} GPU(s) each" if gpus else ""
            self.note(
                "slots",
                f"{self.parallel} experiment slot(s){each}; the agent works {self.pipeline} ahead"
                + ("" if self.in_turn else f", up to {self.most_proposers} proposals at once"),
                slots=self.parallel,
            )

    def _night_through_full_disks(self) -> str:
        """The night; a full disk under the run folder pauses it until space is freed."""

        def failed(e: Exception, pause: float) -> None:
            self.note(
                "disk-full",
                f"disk full under {self.run_dir} ({e}) — free some space; the run continues "
                f"by itself (next try in {pause:.0f} s)",
                error=str(e),
            )

        return self.backoff.retry(
            self._night,
            retryable=lambda e: (
                isinstance(e, (OSError, sqlite3.OperationalError)) and _disk_full(e)
            ),
            failed=failed,
        )

    def cancel(self) -> None:
        """Tear down: no more retries anywhere, every proposal in flight and every running
        container is killed (a proposal's row stays `proposing`: `resume` asks again)."""
        self.proposers.cancel()
        self.slots.cancel()
        self.executor.cancel()

    # -- the main loop ------------------------------------------------------
    def _night(self) -> str:
        """Propose, dispatch and conclude experiments until a stop rule fires and nothing is
        left in flight. The loop never waits on an agent: it wakes when a slot or a proposer
        hands something back (or every POLL_S, to look at the clock)."""
        self._settle()
        if self.ledger.get(0) is None:
            self.slots.submit(self.proposals.baseline().exp_id, "judge")
        self.exhausted = None
        while True:
            self.wake.clear()
            self.slots.tick()
            self._conclude_finished()
            self._take_proposals()
            stop = self._stop_reason()
            why = stop or self.exhausted
            if why is not None:
                if stop and self.proposers.in_flight and not self.proposers.cancelled.is_set():
                    self._stop_proposing(stop)
                if not self.slots.owned and not self.proposers.in_flight:
                    return why
            else:
                self._propose_more()
            self.wake.wait(POLL_S)

    def _propose_more(self) -> None:
        """Start proposals while there is room: slots that will want work, within the budget;
        none while a person has paused the night (what is in flight goes on)."""
        paused = self.ledger.paused()
        if paused != self._paused:
            self._paused = paused
            self.note("paused" if paused else "unpaused",
                      "paused by a person: no new proposals; what is in flight finishes"
                      if paused else "resumed by a person: proposals start again")  # fmt: skip
        if paused:
            return
        while self._room():
            self.proposers.start(self.proposals.reserve())

    def _room(self) -> bool:
        in_flight, b = len(self.proposers.in_flight), self.contract.budget
        think = None if self.in_turn else self.proposers.think_s()
        if in_flight >= self.most_proposers or len(self.slots.owned) + in_flight >= capacity(
            self.parallel, self.pipeline, think, self.slots.run_s()
        ):
            return False
        if not self.proposers.room(in_flight):
            return False  # the host is slow to start agents: hold until it is quick again
        exps = self.ledger.experiments()
        if b.max_experiments is not None and len(exps) - 1 >= b.max_experiments:
            return False  # the rows in flight count: the night never overshoots
        if b.max_cost_usd is not None:  # what the proposals in flight will likely cost, too
            each = self.proposers.cost_each()
            if self.ledger.total_cost() + each * (in_flight + 1) > b.max_cost_usd and each:
                return False
        return True

    def _take_proposals(self) -> None:
        """Dispatch what the proposers made; an agent's own error ends the night here."""
        for made in self.proposers.collect():
            if made.error is not None:
                raise made.error
            if made.proposed is None:
                if not self.proposers.cancelled.is_set():
                    self.exhausted = "the agent has nothing more to propose"
                continue
            exp = self.ledger.get(made.exp_id)
            self.proposers.spent(exp.cost_usd if exp else None)
            if made.proposed.dispatch:
                self.slots.submit(made.exp_id, "judge")

    def _stop_proposing(self, why: str) -> None:
        """A stop rule fired: the proposals in flight are stopped (their rows dropped)."""
        n = len(self.proposers.in_flight)
        self.note("stopping", f"stopping ({why}): cancelling {n} proposal(s) in flight", count=n)
        self.proposers.cancel()

    def _settle(self) -> None:
        """Take up every unfinished experiment no slot is working on (after a crash or a pause)."""
        for exp in self.ledger.experiments():
            if exp.phase == "done" or exp.id in self.slots.owned:
                continue
            if exp.id in self.proposers.in_flight:
                continue
            self.note(
                "resume",
                f"resuming experiment {exp.id} from phase '{exp.phase}'",
                experiment=exp.id,
                phase=exp.phase,
            )
            if exp.phase == "proposing":
                # Killed while the agent worked: nothing ran; propose again under the same id.
                self.proposals.restart(exp.id)
                self.proposers.start(exp.id)
            elif exp.phase in ("frozen", "running"):
                self._diff_patch(exp)
                self.slots.submit(exp.id, "judge")
            elif exp.phase == "confirming":
                self.slots.submit(exp.id, "rebased")
            else:
                self._conclude(exp)

    def _diff_patch(self, exp: Experiment) -> None:
        """A kill between the freeze and the diff's file leaves none: write it from the commits."""
        patch = self.ledger.exp_dir(exp.id) / "diff.patch"
        if exp.id > 0 and exp.commit_sha and not patch.exists():
            patch.write_text(self.ws.diff(exp.parent, exp.commit_sha))

    def _conclude_finished(self) -> None:
        for exp_id in self.slots.finished():
            exp = self.ledger.get(exp_id)
            assert exp is not None
            self._conclude(exp)
            if exp.id == 0:
                self.slots.release_held()

    def _conclude(self, exp: Experiment) -> None:
        again = self.merges.conclude(exp)
        if again is not None:
            self.slots.submit(again, "rebased")

    def _stop_reason(self) -> str | None:
        base = self.ledger.get(0)
        if base is not None and base.phase == "done" and base.status != "keep":
            reason = (
                f"baseline crashed ({base.reason}) — fix the evaluator or implementation; "
                f"see {self.ledger.exp_dir(0)}/output.log"
            )
            self.ledger.set_stopped(reason)
            self.events.event("stopped", reason=reason)
            raise UserError(reason)
        info = self.ledger.run()
        active = info.active_s if info else 0.0
        return stop_reason(
            self.contract, self.ledger.experiments(), active, self.ledger.total_cost()
        )
