"""The replay agent: a folder of `git diff` patches, one per experiment, in name order.

Experiment n (1-based; 0 is the baseline) gets the n-th patch, so a resumed run
replays exactly what it would have. The file's stem is the description.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.agents import Context, Proposal
from orchestrator.errors import ContractError, ProposalRefused

if TYPE_CHECKING:
    from orchestrator.agents.config import ReplayAgentConfig
    from orchestrator.contract.model import Contract


def build(
    cfg: ReplayAgentConfig, contract: Contract, run_dir: Path, say: Callable[[str], None]
) -> ReplayAgent:
    """`agent.kind = "replay"` (its `builder`)."""
    return ReplayAgent(cfg.patches)


class ReplayAgent:
    in_turn = True
    """Its patches are a sequence, each written against the result of the ones before:
    by default they run one at a time, never ahead of the previous one's merge."""

    def __init__(self, patches: Path) -> None:
        if not patches.is_dir():
            raise ContractError(
                f"agent.patches: {patches} is not a folder — point --patches at a folder of .patch/.diff files"
            )
        self.patches = sorted(
            p for p in patches.iterdir() if p.is_file() and not p.name.startswith(".")
        )
        if not self.patches:
            raise ContractError(
                f"agent.patches: {patches} holds no patch files — add some `git diff` files"
            )

    def cancel(self) -> None:
        """A patch applies in an instant: nothing to stop."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        if ctx.experiment > len(self.patches):
            return None
        patch = self.patches[ctx.experiment - 1]
        # The scratch folder may sit inside the host repo: stop git from finding it.
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(scratch.parent)}
        proc = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch.resolve())],
            cwd=scratch,
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["git apply failed"])[0]
            raise ProposalRefused(
                f"patch {patch.name} does not apply: {first}", description=patch.stem
            )
        return Proposal(description=patch.stem, hypothesis=f"replayed from {patch.name}")
