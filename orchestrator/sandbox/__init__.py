"""Where candidate code runs: a small Protocol and its value types.

See README.md in this folder for what each file holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from orchestrator.contract.model import Sandbox as SandboxLimits
    from orchestrator.sandbox.disk import Workdir

Stale = Callable[[dict[str, str]], bool]
"""Given a container's labels: is it left over (nobody waits for its result)?"""

LABEL = "autoresearch"
"""Every container we create carries this label (value "1")."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Worker:
    """The candidate's side of a harness-mode container: started by the engine just after
    the container, as another user, its output kept apart (never the metric channel)."""

    command: tuple[str, ...]
    user: str
    """uid:gid of the candidate (the container's main process runs as the evaluator's)."""
    workdir: str = "/workspace"


class Gated(Protocol):
    """A container made ahead, waiting at its gate (`sandbox/warm.py`'s `Warm`)."""

    def take(self) -> Any:
        """The container, for the one run that goes in it."""
        ...

    def go(self, env: dict[str, str]) -> float:
        """Let it run with `env`'s values; the CPU seconds it used before. Raises InfraError."""
        ...


@dataclass(frozen=True)
class ContainerSpec:
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
    seccomp: str | None = None
    """The seccomp profile's JSON text; None = the engine's default profile."""
    disk: Workdir | None = None
    """The capped folder behind `workspace`; watched by the sandbox when not enforced."""
    user: str | None = None
    """uid:gid of the main process; None = `limits.user`."""
    tmpfs: dict[str, str] = field(default_factory=dict)
    """More in-memory folders (container path → mount options) beside /tmp."""
    worker: Worker | None = None
    """Harness mode: the candidate's worker, exec'd into the running container."""
    warm: Gated | None = None
    """A container made ahead for this spec, waiting to go (`sandbox/warm.py`); None: a fresh
    one is made."""
    one_core: bool = False
    """Its processes run on one core of the host, leased when it starts (`sandbox/cores.py`):
    a harness-mode experiment of at most one CPU under runc."""
    core: int | None = None
    """The core it was leased, its cpuset (set by the sandbox as it runs it); None: it floats."""


@dataclass(frozen=True)
class ContainerResult:
    """What happened, as measured by the orchestrator (trusted figures)."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    wall_s: float
    peak_memory_bytes: int | None
    cpu_s: float | None
    output: str
    """stdout+stderr interleaved, at most what the engine kept (capped)."""
    disk_full: bool = False
    """/workspace reached `sandbox.disk` (ENOSPC inside, or killed by the watchdog)."""
    workspace_bytes: int | None = None
    """Bytes the run added to /workspace."""
    run_output: str | None = None
    """With sealed scoring: the run stage's output (`output` is then the scorer's)."""
    peak_vram_bytes: int | None = None
    """Peak GPU memory of the container's processes (NVML, sampled); None without a GPU."""
    node: str | None = None
    """The cluster node that ran it (Ray); None on this machine."""
    gpus: tuple[str, ...] = ()
    """The GPUs the container was given, when its executor chose them (Ray)."""
    candidate_output: str | None = None
    """Harness mode: what the candidate's worker printed (capped); never parsed for metrics."""
    gateway: dict[str, float] = field(default_factory=dict)
    """The run stage's services as the host's gateway counted them (`gateway.<name>.<figure>`:
    requests, bytes, tokens, USD); empty without services. Trusted figures."""
    forks_refused: int = 0
    """Forks its pids limit refused while it ran (the kernel's count, sampled; a figure for
    the agent's container, which outlives a failed command long enough to be read)."""
    crash: str | None = None
    """A crash the orchestrator states itself, with this reason: what the run left was refused
    (a link handed to the scorer), or the scorer ran out of its own budget."""

    @property
    def failed(self) -> bool:
        """The stage did not finish cleanly: a timeout, an OOM kill, a full disk or a non-zero exit."""
        return self.timed_out or self.oom_killed or self.disk_full or self.exit_code != 0

    @property
    def signal(self) -> int | None:
        """The signal that ended the process (exit codes above 128), if any."""
        return self.exit_code - 128 if self.exit_code is not None and self.exit_code > 128 else None


class SandboxBackend(Protocol):
    """Runs one container per spec. Every method may be called from any thread."""

    def run(self, spec: ContainerSpec) -> ContainerResult:
        """Run `spec.command` to completion or to its budget, then remove the container.

        Returns a result for anything the code did (non-zero exit, timeout, OOM).
        Raises:
            InfraError: the engine failed (unreachable, image missing, API error);
                the experiment did not run fairly and must be retried.
        """
        ...

    def image_id(self, image: str) -> str:
        """The content id of a local image (provenance: `verify` re-runs in the same one).

        Raises:
            InfraError: the image is not present or the engine failed.
        """
        ...

    def cancel(self) -> int:
        """Kill every experiment this backend is running now (from any thread), and any
        started before `reopen()`; how many were running. Raises nothing: a container
        the engine cannot kill now is removed by the next `reap`."""
        ...

    def reopen(self) -> None:
        """Run again after a `cancel()`. Raises nothing."""
        ...

    def reap(self, *, everything: bool = False, stale: Stale | None = None) -> int:
        """Remove our containers whose owner process is dead, or whose labels `stale`
        says are (all of ours with `everything`); return how many were removed.

        Raises:
            InfraError: the engine does not answer.
        """
        ...
