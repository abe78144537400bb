"""Proposers: a small Protocol, the value types it trades in, one file per agent.

See README.md in this folder for what each file holds and how to add a kind.
An agent edits a scratch copy of the best commit; it never touches the repo.
Whatever it writes is then validated and frozen by the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orchestrator.contract.model import Contract
    from orchestrator.experiment import Experiment


@dataclass(frozen=True)
class Context:
    """What an agent sees when it proposes experiment `experiment`."""

    experiment: int
    contract: Contract
    direction: str
    best_commit: str
    history: list[Experiment] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    """The implementation files at the best commit, by repo-relative path."""
    tails: dict[int, str] = field(default_factory=dict)
    """Log tails of failed experiments, by id (untrusted text)."""
    run_dir: Path | None = None
    """The run folder, for agents that keep state (the tuner's study)."""
    steering: list[tuple[float, str]] = field(default_factory=list)
    """Notes the person running the night gave since it started (`autoresearch steer`):
    (time, text), oldest first."""
    notes: list[tuple[int, str]] = field(default_factory=list)
    """What earlier proposals noted for the others (kept ideas, ideas ruled out and why):
    (experiment, text), oldest first."""


@dataclass(frozen=True)
class Proposal:
    description: str
    """One line: what changed (the results.tsv description)."""
    hypothesis: str = ""
    """Why it should help: the reasoning trail users read in the morning."""
    cost_usd: float | None = None
    """What proposing cost; None when unknown (a model without a price)."""
    usage: dict[str, int] = field(default_factory=dict)
    """Tokens: input, output, cache_write, cache_read."""
    agent_s: float | None = None
    """How long the agent itself worked (its process), without starting its container or
    waiting its turn; None when it cannot tell (the whole proposal's time is used)."""
    notes: tuple[str, ...] = ()
    """What this proposal found that the others should know (the shared notes)."""
    by: str | None = None
    """Which member of a portfolio made it (recorded as the experiment's `agent`)."""


class Agent(Protocol):
    """Proposes changes, several at once unless `in_turn`. It may be asked while earlier
    proposals are still being made or run (they are in `ctx.history`, marked in flight)."""

    in_turn: bool
    """True: its proposals are a sequence (each written against the result of the one
    before), so by default it is asked only once the previous one merged or did not."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        """Edit the files under `scratch` (a copy of the best commit) and describe the change.

        Unless `in_turn`, it is called from several threads at once (each with its own
        `scratch`): one conversation or process per call, nothing shared but what is safe.

        Returns None when the agent has nothing more to propose (the run ends).
        Raises:
            ProposalRefused: this proposal cannot be made (e.g. a patch that does
                not apply); recorded as the experiment's outcome, the run goes on.
            InfraError: the agent's backend failed (API down); retried, never
                recorded as the candidate's failure.
            UserError: the agent's configuration is wrong (a refused key); the
                night stops with one line.
        """
        ...

    def cancel(self) -> None:
        """Stop every proposal in flight now (the night is torn down or a stop rule fired):
        its processes are killed, a conversation ends at its next turn. Each such call
        raises or returns soon after; what it spent is still reported."""
        ...
