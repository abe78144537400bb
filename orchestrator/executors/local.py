"""Attempts in a sandbox on this machine: the Docker engine, or a test's wrapper of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.contract.model import Contract
from orchestrator.errors import EngineUnavailable, ImageAbsent, ImageMissing, InfraError
from orchestrator.executors import RunFolder
from orchestrator.executors.attempt import Attempt, Leftover, Trusted, Workdirs, perform
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

    def run(self, attempt: Attempt) -> ContainerResult:
        return perform(attempt, self.sandbox, self.workdirs, self.trusted)

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
        return self.sandbox.cancel()

    def reopen(self) -> None:
        self.sandbox.reopen()

    def reap(self, *, everything: bool = False) -> int:
        return self.sandbox.reap(everything=everything)

    def close(self) -> None:
        self.workdirs.close()
