"""Where attempts run: this machine's Docker engine, or the nodes of a Ray cluster.

The loop, the agents, the ledger and the merges stay on the driver; only an
`Attempt` (a frozen candidate's tree and what the driver decided about it)
travels, and only a `ContainerResult` (the trusted figures and the output) comes back.
`LocalExecutor` runs attempts in the sandbox it is given; `RayExecutor`
(`executors/ray.py`, imported only when the contract asks for Ray)
sends each one to a node that advertises a free sandbox slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from orchestrator.contract.model import Contract
    from orchestrator.executors.attempt import Attempt
    from orchestrator.sandbox import ContainerResult


@dataclass(frozen=True)
class RunFolder:
    """What an executor needs to know about the run it serves."""

    tag: str
    path: Path
    """The run folder: holds the trusted snapshots (`evaluator/`, `scorer/`) and the
    local sandbox folders."""
    data_root: Path
    """The repository: relative data mounts resolve here."""


class Executor(Protocol):
    """Runs attempts somewhere a sandbox is. Every method may be called from any thread."""

    assigns_gpus: bool
    """True: the executor picks each attempt's GPUs (Ray); False: the driver leases them."""

    def run(self, attempt: Attempt) -> ContainerResult:
        """Run the attempt to a result (`ContainerResult.node` says where).

        Raises:
            InfraError: the engine, the host or the node failed, or the executor was
                cancelled; the attempt did not run fairly and must be retried.
        """
        ...

    def slots(self, contract: Contract) -> int | None:
        """How many attempts can run at once; None: decide from this machine.

        Raises nothing (an unreachable cluster counts as one slot).
        """
        ...

    def check(self, contract: Contract) -> None:
        """Check up front that the attempts of `contract` can run.

        Raises:
            ImageMissing: the sandbox image is not built (here or on a node).
            UserError: no capacity (no node with slots, too few GPUs), an engine
                that does not answer on a node.
            EngineUnavailable: this machine's engine does not answer.
        """
        ...

    def image_id(self, image: str) -> str:
        """The content id of the sandbox image (the sorted ids, comma-separated, where
        nodes built their own).

        Raises:
            InfraError: the image is missing, or the engine failed.
        """
        ...

    def cancel(self) -> int:
        """Kill every attempt running now (from any thread), and any started before
        `reopen()`; how many were running. Raises nothing."""
        ...

    def reopen(self) -> None:
        """Run attempts again after a `cancel()`. Raises nothing."""
        ...

    def reap(self, *, everything: bool = False) -> int:
        """Remove containers of attempts nobody runs any more (all of the run's with
        `everything`); how many. Raises InfraError when the engine does not answer."""
        ...

    def close(self) -> None:
        """The night is over: release what was kept ready for the next attempt. Raises nothing."""
        ...
