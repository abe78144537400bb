"""The `[executor]` table of a contract: where attempts run.

A discriminated union on `kind` (STYLE.md #3). Each member's `build()` makes
its executor lazily: the local one never imports Ray. A new executor is one
new file in `executors/` plus one member here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import Field, field_validator

from orchestrator.errors import UserError
from orchestrator.schema import Model

if TYPE_CHECKING:
    from orchestrator.doctor import Check
    from orchestrator.executors import Executor, Leftover, RunFolder
    from orchestrator.sandbox import SandboxBackend


class LocalExecutorConfig(Model):
    """This machine's Docker engine."""

    kind: Literal["local"] = "local"

    def build(
        self, folder: RunFolder, leftover: Leftover, sandbox: SandboxBackend | None = None
    ) -> Executor:
        """The executor over `sandbox` (None: this machine's Docker engine).

        Raises EngineUnavailable when no engine answers.
        """
        from orchestrator.executors.local import LocalExecutor

        if sandbox is None:
            from orchestrator.sandbox.docker import DockerSandbox

            sandbox = DockerSandbox()
        return LocalExecutor(sandbox, folder, leftover)

    def checks(self, image: str) -> list[Check]:
        """`doctor`: this machine's engine, image, runtimes, GPUs and key."""
        from orchestrator.doctor import checks

        return checks(image)


class RayExecutorConfig(Model):
    """The nodes of a Ray cluster (`pip install 'autoresearch-orchestrator[ray]'`)."""

    kind: Literal["ray"] = "ray"

    address: str | None = None
    """The head's HOST:PORT (or `ray://HOST:PORT`); unset = RAY_ADDRESS or the cluster on this host."""

    node_sandbox: str = "orchestrator.sandbox.docker:DockerSandbox"
    """`module:callable` each node calls (no arguments) for its sandbox; must import there."""

    @field_validator("node_sandbox")
    @classmethod
    def _callable(cls, v: str) -> str:
        if ":" not in v:
            raise ValueError(f"node_sandbox {v!r} must be 'module:callable'")
        return v

    def build(
        self, folder: RunFolder, leftover: Leftover, sandbox: SandboxBackend | None = None
    ) -> Executor:
        """Join the cluster (each node brings its own sandbox; `sandbox` is not used).

        Raises UserError when Ray is not installed or no cluster answers.
        """
        try:
            from orchestrator.executors.ray import RayExecutor
        except ImportError as e:
            raise UserError(
                f"executor 'ray' needs Ray ({e}) — pip install 'autoresearch-orchestrator[ray]'"
            ) from None
        return RayExecutor(self, folder)

    def checks(self, image: str) -> list[Check]:
        """`doctor --executor ray`: each node with sandbox slots, its engine and image."""
        from orchestrator.doctor import cluster_checks

        return cluster_checks(self.address, image, self.node_sandbox)


ExecutorConfig = Annotated[LocalExecutorConfig | RayExecutorConfig, Field(discriminator="kind")]

EXECUTOR_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0] for m in get_args(get_args(ExecutorConfig)[0])
)
"""Every `executor.kind` (the CLI's `--executor` choices)."""
