"""Where candidate code runs: a small Protocol and its value types.

`docker.py` is the local Docker implementation; `cgroups.py` measures what the
container used, from the host (the candidate cannot lie about it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.contract import Sandbox as SandboxLimits

LABEL = "autoresearch"
"""Every container we create carries this label (value "1")."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class RunSpec:
    workspace: Path
    """Host folder holding the candidate tree; mounted read-write at /workspace."""
    command: str
    budget_s: float
    limits: SandboxLimits
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()
    """UUIDs of the leased GPUs the container may use (Docker device requests)."""


@dataclass(frozen=True)
class RunResult:
    """What happened, as measured by the orchestrator (trusted figures)."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    wall_s: float
    peak_memory_bytes: int | None
    cpu_s: float | None
    output: str
    """stdout+stderr interleaved, at most what the engine kept (capped)."""


class SandboxBackend(Protocol):
    def run(self, spec: RunSpec) -> RunResult:
        """Run `spec.command` to completion or to its budget, then remove the container.

        Returns a result for anything the code did (non-zero exit, timeout, OOM).
        Raises:
            InfraError: the engine failed (unreachable, image missing, API error);
                the experiment did not run fairly and must be retried.
        """
        ...

    def reap(self, *, everything: bool = False) -> int:
        """Remove our containers whose owner process is dead (all of ours with
        `everything`); return how many were removed."""
        ...
