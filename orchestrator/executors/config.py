"""The `[executor]` table of a contract: where attempts run.

A discriminated union on `kind` (STYLE.md #3). Each member names, as
'module:function', the function that builds its executor (`builder`) and the
one that makes its `doctor` checks (`checker`); they are imported only when
called (`runs.build_executor`, `autoresearch doctor`): the local executor never
imports Ray, and this module imports no executor (they import it). A new
executor is one new file in `executors/` plus one member here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator

from orchestrator.errors import UserError
from orchestrator.schema import Model, resolve


class _Member(Model):
    builder: ClassVar[str]
    """'module:function' that makes the executor from (this member, the run's `RunFolder`, the
    `Leftover` callback, the sandbox or None for the executor's own default)."""
    checker: ClassVar[str]
    """'module:function' that `doctor` calls with (this member, the sandbox image): its checks."""

    def load(self, where: str) -> Any:
        """What `where` (its `builder` or `checker`) names, imported now."""
        return resolve(where)


class LocalExecutorConfig(_Member):
    """This machine's Docker engine."""

    kind: Literal["local"] = "local"
    builder: ClassVar[str] = "orchestrator.executors.local:build"
    checker: ClassVar[str] = "orchestrator.doctor:local_checks"


class RayExecutorConfig(_Member):
    """The nodes of a Ray cluster (`pip install 'autoresearch-orchestrator[ray]'`)."""

    kind: Literal["ray"] = "ray"
    builder: ClassVar[str] = "orchestrator.executors.ray:build"
    checker: ClassVar[str] = "orchestrator.doctor:ray_checks"

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

    def load(self, where: str) -> Any:
        """Raises UserError when Ray is not installed (the builder's module imports it)."""
        try:
            return resolve(where)
        except ImportError as e:
            raise UserError(
                f"executor 'ray' needs Ray ({e}) — pip install 'autoresearch-orchestrator[ray]'"
            ) from None


ExecutorConfig = Annotated[LocalExecutorConfig | RayExecutorConfig, Field(discriminator="kind")]

EXECUTOR_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0] for m in get_args(get_args(ExecutorConfig)[0])
)
"""Every `executor.kind` (the CLI's `--executor` choices)."""
