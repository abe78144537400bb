"""The agent that proposes nothing: the run measures the baseline and stops.

Useful before a night, to see what an evaluator's noise is (`--agent none`),
and for runs opened only to look or to verify. It is also the smallest example
of an agent kind: this file plus `NoneAgentConfig` in `config.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.agents import Context, Proposal

if TYPE_CHECKING:
    from orchestrator.agents.config import NoneAgentConfig
    from orchestrator.contract.model import Contract


def build(
    cfg: NoneAgentConfig, contract: Contract, run_dir: Path, say: Callable[[str], None]
) -> NoAgent:
    """`agent.kind = "none"` (its `builder`): what any kind's builder is called with."""
    return NoAgent()


class NoAgent:
    in_turn = False

    def cancel(self) -> None:
        """Nothing is ever in flight."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        return None
