"""Proposers. One small Protocol, one file per agent.

| file | agent |
| --- | --- |
| `replay.py` | applies a folder of `git diff` patches in name order (scripted runs, tests) |
| `anthropic.py` | Claude through the official SDK: text-editor tool + `submit`, streaming, caching, cost |
| `tuner.py` | Optuna ask/tell over module-level constants declared in `[agent.space]` (offline) |
| `command.py` | any coding-agent CLI (Claude Code, Codex, aider...) run on the scratch checkout |
| `editor.py` | the text-editor tool the LLM agents edit through; refuses writes outside the allowed paths |
| `context.py` | renders what an agent sees; untrusted log tails fenced and truncated |

An agent edits a scratch copy of the best commit; it never touches the repo.
Whatever it writes is then validated and frozen by the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.contract import Contract
from orchestrator.ledger import Experiment


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


class Agent(Protocol):
    """Proposes one change at a time. It may be asked while earlier proposals still run
    (they are in `ctx.history`, marked in flight); an agent with a class attribute
    `in_turn = True` is by default only asked once the previous one is merged or not."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        """Edit the files under `scratch` (a copy of the best commit) and describe the change.

        Returns None when the agent has nothing more to propose (the run ends).
        Raises:
            ProposalRefused: this proposal cannot be made (e.g. a patch that does
                not apply); recorded as the experiment's outcome, the run goes on.
            InfraError: the agent's backend failed (API down); retried, never
                recorded as the candidate's failure.
        """
        ...
