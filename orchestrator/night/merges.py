"""Merges: carrying a decided experiment to `done`, merging a winner with provenance.

A winner forked from the best that is still the best fast-forwards the run
branch to a commit of its exact tree with provenance trailers. A winner whose
base went stale (parallel work merged meanwhile) is replayed on the new best and
must win again there before it merges; a conflict, or a base that keeps moving,
overturns it into a discard. An agent whose proposal is a whole assignment (the
tuner's parameter values) may make the same change again on the new best instead
of a conflict (`reapply`): that too must win there. Concluding is idempotent: a resumed night that finds
the merge already made records it, never makes it twice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from orchestrator.contract.model import Contract, TreeSearch
from orchestrator.errors import ProposalRefused
from orchestrator.experiment import Experiment
from orchestrator.ledger import Ledger
from orchestrator.night import Note
from orchestrator.workspace import Workspace

MAX_REBASES = 3
"""A winner whose base keeps moving is rebased at most this many times."""

Reapply = Callable[[int, Path], bool]
"""The agent's `reapply(experiment, scratch)`: make experiment's change again in `scratch`, a
copy of the new best; False when it cannot."""


class Merges:
    def __init__(
        self,
        *,
        contract: Contract,
        ledger: Ledger,
        workspace: Workspace,
        note: Note,
        band: Callable[[], float],
        reapply: Reapply | None = None,
    ) -> None:
        self.contract, self.ledger, self.ws = contract, ledger, workspace
        self.note, self.band, self.reapply = note, band, reapply

    def conclude(self, exp: Experiment) -> int | None:
        """Carry a decided experiment to `done`, merging a winner; the id of a rebased winner
        the driver must dispatch for confirmation instead, else None."""
        if exp.phase != "decided":
            return None
        merged = None
        if exp.status == "keep" and exp.id > 0 and exp.flags and self.contract.review == "flagged":
            why = f"{exp.reason}; held for review, not merged: {'; '.join(exp.flags)}"
            self.ledger.held(exp.id, why)
            self.note(
                "held",
                f"experiment {exp.id}: held for review — read its diff, then "
                f"`autoresearch accept {self.ws.tag} {exp.id}`",
                experiment=exp.id,
            )
            self.ledger.write_results_tsv()
            return None
        if exp.status == "keep" and exp.id > 0 and isinstance(self.contract.search, TreeSearch):
            merged = self._merge_tree(exp)
        elif exp.status == "keep" and exp.id > 0:
            assert exp.commit_sha is not None
            head = self.ws.best()
            if self.ws.is_merge_of(head, exp.commit_sha, exp.parent):
                merged = head
            elif head != exp.parent:
                if self._rebase(exp, head):
                    return exp.id
            else:
                merged = self._merge(exp)
        self.ledger.done(exp.id, merged=merged is not None, merged_sha=merged)
        if merged:
            self.note(
                "merged",
                f"  #{exp.id} → keep: merged into {self.ws.branch} ({merged[:12]})",
                experiment=exp.id,
                commit=merged,
                branch=self.ws.branch,
            )
        self.ledger.write_results_tsv()
        return None

    def _rebase(self, exp: Experiment, head: str) -> bool:
        """A winner forked from an older best: replay it on `head` to confirm it there.

        True when it must be confirmed; False when it was overturned (a conflict, or the
        best moved too often) and is a discard now.
        """
        assert exp.commit_sha is not None
        landed = self.ws.landed(exp.parent, head)
        since = ", ".join(f"#{e.id}" for e in self.ledger.experiments() if e.merged_sha in landed)
        if exp.rebases >= MAX_REBASES:
            why = f"won, but the best moved {MAX_REBASES + 1} times while it ran (last: {since})"
        elif (rebased := self._replay(exp, head)) is None:
            why = (
                f"won, but its change conflicts with {since or 'the new best'}, merged while it ran"
            )
        else:
            commit, diff = rebased
            (self.ledger.exp_dir(exp.id) / f"diff.rebased.{exp.rebases + 1}.patch").write_text(diff)
            self.ledger.rebased(exp.id, commit, head)
            self.note(
                "rebased",
                f"experiment {exp.id} won on a stale base: rebased onto {since} ({head[:12]}); "
                "confirming it there",
                experiment=exp.id,
                commit=commit,
                onto=head,
            )
            return True
        self.ledger.overturned(exp.id, why)
        self.note(
            "overturned", f"experiment {exp.id}: discard — {why}", experiment=exp.id, reason=why
        )
        return False

    def _replay(self, exp: Experiment, head: str) -> tuple[str, str] | None:
        """The winner's change on `head`: a three-way merge, else the agent's own re-making
        of it (validated and frozen like any proposal); None when neither can."""
        assert exp.commit_sha is not None
        rebased = self.ws.rebase(exp.commit_sha, head, exp.id)
        if rebased is not None or self.reapply is None:
            return rebased
        with tempfile.TemporaryDirectory(prefix="autoresearch-reapply-") as tmp:
            self.ws.export(head, Path(tmp))
            if not self.reapply(exp.id, Path(tmp)):
                return None
            message = self.ws.message(exp.commit_sha)
            try:
                return self.ws.freeze(Path(tmp), head, message, exp.id)
            except ProposalRefused:
                return None  # e.g. the new best holds those values already

    def _merge_tree(self, exp: Experiment) -> str:
        """Tree search: a winner beat the night's best on its own tree, whichever node it
        started from; that exact tree goes onto the run branch (once: a resumed night finds
        the head already holds it)."""
        assert exp.commit_sha is not None
        head = self.ws.best()
        if self.ws.tree(head) == self.ws.tree(exp.commit_sha):
            return head
        return self._merge(exp, onto=head)

    def _merge(self, exp: Experiment, onto: str | None = None) -> str:
        """Fast-forward the run branch (at the candidate's parent) to its tree, with provenance."""
        assert exp.commit_sha is not None
        base = self.ledger.get(0)
        info = self.ledger.run()
        assert base is not None and base.metric is not None
        assert exp.metric is not None and info is not None
        trailers = {
            "Autoresearch-Experiment": str(exp.id),
            "Autoresearch-Metric": f"{self.contract.metric.name}={exp.metric:.6g}",
            "Autoresearch-Baseline": f"{base.metric:.6g}",
            "Autoresearch-Delta": f"{exp.metric - base.metric:+.6g}",
            "Autoresearch-Noise-Band": f"{self.band():.6g}",
            "Autoresearch-Image": info.image_id or self.contract.sandbox.image,
            "Autoresearch-Evaluator": info.evaluator_hash,
        }
        return self.ws.merge(exp.commit_sha, onto or exp.parent, exp.description, exp.hypothesis,
                             trailers)  # fmt: skip
