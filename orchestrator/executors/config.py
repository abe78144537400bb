"""The `[executor]` table of a contract: where attempts run.

A discriminated union on `kind` (STYLE.md #3). Each member names, as
'module:function', the function that builds its executor (`builder`) and the
one that makes its `doctor` checks (`checker`); they are imported only when
called (`runs.build_executor`, `autoresearch doctor`): the local executor never
imports Ray, and this module imports no executor (they import it). A new
executor is one new file in `executors/` plus one member here.
"""

from __future__ import annotations

import os
import socket
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

    def reachable(self) -> None:
        """Raises UserError, in one line and in seconds, when what the executor runs on cannot
        answer at all: asked before its module (and what that imports) is loaded."""


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

    def reachable(self) -> None:
        """A HOST:PORT nobody listens on fails here, before Ray is imported (seconds) or retried."""
        probe(self.address)

    def load(self, where: str) -> Any:
        """Raises UserError when Ray is not installed (the builder's module imports it)."""
        try:
            return resolve(where)
        except ImportError as e:
            raise UserError(
                f"executor 'ray' needs Ray ({e}) — pip install 'autoresearch-orchestrator[ray]'"
            ) from None


SLOT = "autoresearch_slot"
"""The custom resource a Ray node advertises, one unit per experiment it may run at once."""
START_HINT = f"""ray start --head --resources='{{"{SLOT}": 1}}'"""
"""How a person starts a head the Ray executor can use."""


def probe(address: str | None) -> None:
    """Raises UserError when nothing listens at a plain HOST:PORT `address` (None: RAY_ADDRESS);
    `auto` and `ray://` addresses are left to Ray."""
    where = address or os.environ.get("RAY_ADDRESS") or "auto"
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit() or "://" in where:
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise UserError(
            f"no Ray cluster answers at {where} ({e.strerror or e}) — start one (`{START_HINT}` on "
            f"the head) or fix --ray-address"
        ) from None


ExecutorConfig = Annotated[LocalExecutorConfig | RayExecutorConfig, Field(discriminator="kind")]

EXECUTOR_KINDS: tuple[str, ...] = tuple(
    get_args(m.model_fields["kind"].annotation)[0] for m in get_args(get_args(ExecutorConfig)[0])
)
"""Every `executor.kind` (the CLI's `--executor` choices)."""
