"""Where attempts run: this machine's Docker engine, or the nodes of a Ray cluster.

The loop, the agents, the ledger and the merges stay on the driver; only an
`Attempt` (a frozen candidate's tree and what the driver decided about it)
travels, and only a `RunResult` (the trusted figures and the output) comes back.
`LocalExecutor` runs attempts in the sandbox it is given; `RayExecutor`
(orchestrator/ray_executor.py, imported only when the contract asks for Ray)
sends each one to a node that advertises a free sandbox slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

from orchestrator.attempt import Attempt, Leftover, Trusted, Workdirs, perform
from orchestrator.contract import Contract
from orchestrator.errors import UserError
from orchestrator.sandbox import RunResult, SandboxBackend


@dataclass(frozen=True)
class RunFiles:
    """What an executor needs to know about the run it serves."""

    tag: str
    run_dir: Path
    """Holds the trusted snapshots (`evaluator/`, `scorer/`) and the local sandbox folders."""
    data_root: Path
    """The repository: relative data mounts resolve here."""


class Executor(Protocol):
    assigns_gpus: bool
    """True: the executor picks each attempt's GPUs (Ray); False: the driver leases them."""

    def run(self, attempt: Attempt) -> RunResult:
        """Run the attempt to a result (`RunResult.node` says where).

        Raises:
            InfraError: the engine or the node failed; the attempt must be retried.
        """
        ...

    def slots(self, contract: Contract) -> int | None:
        """How many attempts can run at once; None: decide from this machine."""
        ...

    def check(self, contract: Contract) -> None:
        """Raise UserError when the attempts of `contract` cannot run (no capacity, no image)."""
        ...

    def image_id(self, image: str) -> str:
        """The content id of the sandbox image (InfraError when it is missing)."""
        ...

    def cancel(self) -> int:
        """Kill every attempt running now (from any thread), and any started before
        `reopen()`; how many were running."""
        ...

    def reopen(self) -> None:
        """Run attempts again after a `cancel()`."""
        ...

    def reap(self, *, everything: bool = False) -> int:
        """Remove containers of attempts nobody runs any more (all of the run's with `everything`)."""
        ...

    def close(self) -> None:
        """The night is over: release what was kept ready for the next attempt."""
        ...


class LocalExecutor:
    """Attempts in a sandbox on this machine (the Docker engine, or a test's wrapper of it)."""

    assigns_gpus = False

    def __init__(self, sandbox: SandboxBackend, files: RunFiles, leftover: Leftover) -> None:
        self.sandbox = sandbox
        self.files = files
        self.leftover = leftover
        d = files.run_dir
        self.trusted = Trusted(d / "evaluator", d / "scorer", files.data_root)
        self.workdirs = Workdirs(d / "sandbox", leftover)

    def run(self, attempt: Attempt) -> RunResult:
        return perform(attempt, self.sandbox, self.workdirs, self.trusted)

    def slots(self, contract: Contract) -> int | None:
        return None

    def check(self, contract: Contract) -> None:
        return None

    def image_id(self, image: str) -> str:
        return self.sandbox.image_id(image)

    def cancel(self) -> int:
        return self.sandbox.cancel()

    def reopen(self) -> None:
        self.sandbox.reopen()

    def reap(self, *, everything: bool = False) -> int:
        return self.sandbox.reap(everything=everything)

    def close(self) -> None:
        self.workdirs.close()


def reachable(contract: Contract) -> None:
    """Raise UserError now (before a run folder or branch exists) when the executor cannot be reached."""
    if contract.executor.kind == "ray":
        _ray().connect(contract.executor.address)


def _ray() -> ModuleType:
    """orchestrator.ray_executor, imported only here: the local executor never imports Ray."""
    try:
        from orchestrator import ray_executor
    except ImportError as e:
        raise UserError(
            f"executor 'ray' needs Ray ({e}) — pip install 'autoresearch-orchestrator[ray]'"
        ) from None
    return ray_executor


def executor_for(contract: Contract, sandbox: SandboxBackend | None, files: RunFiles,
                 leftover: Leftover) -> Executor:  # fmt: skip
    """The executor `contract.executor` names; Ray is imported only when it is the one."""
    if contract.executor.kind == "ray":
        executor: Executor = _ray().RayExecutor(contract.executor, files)
        return executor
    if sandbox is None:
        raise UserError(
            "the local executor needs this machine's Docker engine — start it (`make engine`)"
        )
    return LocalExecutor(sandbox, files, leftover)
