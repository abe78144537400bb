"""Attempts in a sandbox on this machine: the Docker engine, or a test's wrapper of it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.contract.model import Contract
from orchestrator.errors import EngineUnavailable, ImageAbsent, ImageMissing, InfraError
from orchestrator.executors import RunFolder
from orchestrator.executors.attempt import Attempt, Trusted, perform
from orchestrator.executors.seats import Seats
from orchestrator.executors.workdirs import Leftover, Workdirs
from orchestrator.gateway.server import check_environment
from orchestrator.sandbox import ContainerResult, SandboxBackend

if TYPE_CHECKING:
    from orchestrator.executors.config import LocalExecutorConfig


def build(
    cfg: LocalExecutorConfig, folder: RunFolder, leftover: Leftover, sandbox: SandboxBackend | None
) -> LocalExecutor:
    """`executor.kind = "local"` (its `builder`): the executor over `sandbox` (None: this
    machine's Docker engine).

    Raises EngineUnavailable when no engine answers.
    """
    if sandbox is None:
        from orchestrator.sandbox.docker import DockerSandbox

        sandbox = DockerSandbox()
    return LocalExecutor(sandbox, folder, leftover)


class LocalExecutor:
    assigns_gpus = False

    def __init__(self, sandbox: SandboxBackend, folder: RunFolder, leftover: Leftover) -> None:
        self.sandbox = sandbox
        self.folder = folder
        self.leftover = leftover
        d = folder.path
        self.trusted = Trusted(d / "evaluator", d / "scorer", folder.data_root)
        self.workdirs = Workdirs(d / "sandbox", leftover)
        self.seats = _seats(sandbox, d / "sandbox", leftover)

    def run(self, attempt: Attempt) -> ContainerResult:
        return perform(attempt, self.sandbox, self.workdirs, self.trusted, self.seats)

    def slots(self, contract: Contract) -> int | None:
        return None

    def check(self, contract: Contract) -> None:
        check_environment(contract.sandbox.services)  # the keys the gateway adds, before anything
        image = contract.sandbox.image
        try:
            self.sandbox.image_id(image)
        except ImageAbsent:
            raise ImageMissing(
                f"sandbox image {image} is not built — run `autoresearch images build` (or `make images`)"
            ) from None
        except InfraError as e:
            raise EngineUnavailable(f"{e} — is the Docker engine up? (`make engine`)") from None

    def image_id(self, image: str) -> str:
        return self.sandbox.image_id(image)

    def cancel(self) -> int:
        killed = self.sandbox.cancel()
        if self.seats is not None:
            self.seats.clear()
        return killed

    def reopen(self) -> None:
        self.sandbox.reopen()

    def reap(self, *, everything: bool = False) -> int:
        return self.sandbox.reap(everything=everything)

    def close(self) -> None:
        if self.seats is not None:
            self.seats.close()
        self.workdirs.close()


def _seats(sandbox: SandboxBackend, box: Path, leftover: Leftover) -> Seats | None:
    """Containers made ahead (executors/seats.py) where the sandbox is this machine's engine
    itself; a wrapper of it (a test's) runs every attempt in a fresh container."""
    from orchestrator.sandbox.docker import DockerSandbox

    return Seats(sandbox, box, leftover) if isinstance(sandbox, DockerSandbox) else None
