"""Proposals: the baseline, a candidate from the agent, refusals and duplicates.

A candidate forks from the best at the moment its proposal starts: the agent
edits a scratch export of that commit, and the workspace validates and freezes
the edit into a candidate commit before anything runs. The experiment's row is
written before the agent is asked (`proposing`) and after the freeze (`frozen`),
so a kill in between proposes again under the same id. A candidate whose tree
equals an earlier one's is recorded as its duplicate, with its result, and never
runs. An outage of the agent's backend pauses here and is never the candidate's
failure. Several proposals are made at once (`proposers.py`): what is here is
safe to call from several threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator import sanitize
from orchestrator.agents import Agent, Context, Proposal
from orchestrator.agents.context import (
    NOTE_CHARS,
    NOTES_EACH,
    RECENT_FAILURES,
    TAIL_CHARS,
)
from orchestrator.contract.model import Contract
from orchestrator.errors import Cancelled, InfraError, ProposalRefused
from orchestrator.experiment import Experiment
from orchestrator.folders import remove_paths, remove_tree
from orchestrator.ledger import Ledger
from orchestrator.night import Backoff, Note
from orchestrator.night.search import parent_for
from orchestrator.night.tampering import screen
from orchestrator.workspace import Workspace


@dataclass(frozen=True)
class Proposed:
    """What the driver does next with experiment `exp_id`."""

    exp_id: int
    dispatch: bool
    """True: a frozen candidate to judge; False: refused (already recorded as such)."""
    agent_s: float | None = None
    """How long the agent itself worked (`Proposal.agent_s`), when it said."""


class Proposals:
    """How one proposal is made; `proposers.py` makes several at once, each in its own thread."""

    def __init__(
        self,
        *,
        contract: Contract,
        ledger: Ledger,
        workspace: Workspace,
        agent: Agent,
        note: Note,
        backoff: Backoff,
    ) -> None:
        self.contract, self.ledger, self.ws, self.agent = contract, ledger, workspace, agent
        self.note = note
        self.backoff = backoff
        self.run_dir = ledger.dir
        self._freezing = threading.Lock()

    def baseline(self) -> Proposed:
        """Experiment 0: the unmodified best, frozen as it is."""
        best = self.ws.best()
        self.ledger.begin(0, best)
        self.ledger.frozen(
            0, best, "baseline", "the unmodified starting point", self.ws.lines_of_code(best),
            self.ws.tree(best),
        )  # fmt: skip
        self.note("experiment", "experiment 0: baseline", experiment=0, commit=best)
        return Proposed(0, dispatch=True)

    def reserve(self) -> int:
        """The next experiment's row (phase `proposing`), forked from the best now, or from the
        parent the tree search picks (`search.py`)."""
        n = self.ledger.next_id()
        self.ledger.begin(n, self._parent())
        return n

    def restart(self, n: int) -> None:
        """A proposal a kill interrupted: asked again under its id, from a parent chosen now."""
        self.ledger.reparent(n, self._parent())

    def _parent(self) -> str:
        return parent_for(self.contract, self.ledger.experiments, self.ws.best())

    def make(self, n: int, cancelled: threading.Event) -> Proposed | None:
        """Ask the agent for experiment `n` (a row in phase `proposing`) and freeze its edit;
        None when the agent has nothing more to propose or the night stopped meanwhile.
        Thread-safe: several run at once, each in its own scratch copy."""
        exp = self.ledger.get(n)
        assert exp is not None and exp.phase == "proposing", exp
        best = exp.parent
        scratch = self.run_dir / "scratch" / f"{n:04d}"
        self._export(best, scratch)
        try:
            proposal = self._ask(n, best, scratch, cancelled)
            if proposal is None:
                self.ledger.abandon(n)
                return None
            self.ledger.cost(n, proposal.cost_usd, proposal.usage, proposal.by)
            self._keep_notes(n, proposal.notes)
            try:
                hidden = self.contract.hidden
                commit, diff = self.ws.freeze(scratch, best, proposal.description, n, hidden)
            except ProposalRefused as e:
                (self.ledger.exp_dir(n) / "refused.txt").write_text(e.reason + "\n")
                return self._refuse(n, e.reason, description=proposal.description)
        except ProposalRefused as e:
            if cancelled.is_set() and not e.cost_usd:  # stopped, and it spent nothing: no trace
                self.ledger.abandon(n)
                return None
            self.ledger.cost(n, e.cost_usd, e.usage, e.by)
            self._keep_notes(n, e.notes)
            return self._refuse(n, e.reason, description=e.description or "(no proposal)")
        finally:
            remove_tree(scratch)
        made = self._frozen(n, commit, diff, proposal)
        return replace(made, agent_s=proposal.agent_s)

    def _frozen(self, n: int, commit: str, diff: str, proposal: Proposal) -> Proposed:
        tree, loc = self.ws.tree(commit), self.ws.lines_of_code(commit)
        with self._freezing:  # of two proposals with one tree, exactly one is the original
            self.ledger.frozen(n, commit, proposal.description, proposal.hypothesis, loc, tree)
            same = self.ledger.same_tree(tree, n)
        (self.ledger.exp_dir(n) / "diff.patch").write_text(diff)
        if same is not None:
            return self._duplicate(n, same, proposal.description)
        flags = screen(diff, self.contract)
        if flags:
            self.ledger.flagged(n, flags)
        self.note(
            "experiment",
            f"experiment {n}: {proposal.description}"
            + (f" [flagged: {'; '.join(flags)}]" if flags else ""),
            experiment=n,
            commit=commit,
            description=proposal.description,
            flags=flags,
        )
        return Proposed(n, dispatch=True)

    def _duplicate(self, n: int, same: Experiment, description: str) -> Proposed:
        """Exactly an earlier candidate's tree: its result, at no sandbox cost."""
        if same.phase == "done" and same.status != "duplicate":
            shown = "-" if same.metric is None else f"{same.metric:.6g}"
            was = f"{same.status}, {self.contract.metric.name} {shown}"
        else:
            was = "still in flight"
        reason = f"the same tree as experiment {same.id} ({was}) — not run again"
        self.note("duplicate", f"experiment {n}: {description} — {reason}", experiment=n,
                  same_as=same.id)  # fmt: skip
        self.ledger.decided(
            n, status="duplicate", reason=reason, metric=same.metric, metrics=same.metrics,
            samples=same.samples,
        )  # fmt: skip
        self.ledger.done(n, merged=False)
        self.ledger.write_results_tsv()
        return Proposed(n, dispatch=False)

    def _ask(self, n: int, best: str, scratch: Path, cancelled: threading.Event) -> Proposal | None:
        """Ask the agent; an outage of its backend pauses here (never the candidate's failure).
        None when the night is torn down meanwhile."""
        tries = 0

        def attempt() -> Proposal | None:
            nonlocal tries
            if tries:  # the copy as it was before the failed try
                self._export(best, scratch)
            tries += 1
            return self.agent.propose(self._context(n, best), scratch)

        def failed(e: Exception, pause: float) -> None:
            self.note(
                "agent-unavailable",
                f"  the agent's backend is unavailable: {e} — retrying in {pause:.0f} s",
                experiment=n,
                error=str(e),
                retry_in_s=pause,
            )

        try:
            return self.backoff.retry(
                attempt,
                retryable=lambda e: isinstance(e, InfraError),
                failed=failed,
                cancelled=cancelled,
            )
        except Cancelled:
            return None

    def _export(self, best: str, scratch: Path) -> None:
        """The proposer's working copy: the best commit without what it may not see."""
        remove_tree(scratch)
        self.ws.export(best, scratch)
        remove_paths(scratch, self.contract.hidden)

    def _context(self, n: int, best: str) -> Context:
        exps = [e for e in self.ledger.experiments() if e.id != n]
        tails = {}
        for e in [e for e in exps if e.status == "crash"][-RECENT_FAILURES:]:  # what agents see
            tail = self._tail(e.id)
            if tail:
                tails[e.id] = tail
        files = self.ws.implementation_files(best)
        return Context(n, self.contract, self._direction(), best, exps, files, tails, self.run_dir,
                       self.ledger.steering(), self.ledger.notes())  # fmt: skip

    def _tail(self, exp_id: int) -> str:
        """The end of what the evaluator and the candidate printed (both untrusted text)."""
        d = self.ledger.exp_dir(exp_id)
        parts = []
        for name, label in (
            ("output.log", "the evaluator"),
            ("candidate.log", "the candidate's code"),
        ):
            if (d / name).exists():
                text = (d / name).read_text(errors="replace")[-2 * TAIL_CHARS :]
                parts.append(f"--- printed by {label} ---\n{text}")
        return "\n".join(parts)

    def _keep_notes(self, n: int, notes: tuple[str, ...]) -> None:
        """The shared notes a proposal left: the first few, one bounded line each."""
        for text in notes[:NOTES_EACH]:
            if line := sanitize.line(str(text))[:NOTE_CHARS]:
                self.ledger.note(n, line)

    def _refuse(self, n: int, reason: str, *, description: str) -> Proposed:
        self.note("refused", f"experiment {n}: refused — {reason}", experiment=n, reason=reason)
        self.ledger.decided(n, status="refused", reason=reason, description=description)
        self.ledger.done(n, merged=False)
        self.ledger.write_results_tsv()
        return Proposed(n, dispatch=False)

    def _direction(self) -> str:
        """The run's snapshot of the direction file (the repo's copy for an older run)."""
        path = self.run_dir / "direction.md"
        if path.exists():
            return path.read_text()
        d = self.contract.direction
        return (self.ws.root / d).read_text() if d else ""
