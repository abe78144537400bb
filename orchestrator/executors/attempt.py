"""One attempt at running a frozen candidate, wherever a sandbox is: this machine or a node.

An `Attempt` is plain data (it pickles: it is what travels to a Ray node): the
candidate's tree as the tar `git archive` wrote, the contract, and the figures
the driver chose (seed, labels, GPUs). `perform` turns it into a result on the
host it runs on: a fresh capped folder holding `workspace/` (the tree, the
trusted files mounted read-only over it) and `results/`; with a `[score]` stage,
a second fresh container then runs the trusted scorer with the run stage's
`/results` read-only and the secret data read-only — and without the
implementation; only its metrics count. The run stage's services (`sandbox.services`) are
served by a gateway of its own for as long as its container lives; its figures come back
with the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import harness
from orchestrator.contract.model import Contract, DataMount
from orchestrator.errors import InfraError
from orchestrator.executors import isolation
from orchestrator.executors.handover import hand_over
from orchestrator.executors.workdirs import Workdirs
from orchestrator.folders import remove_paths, unpack
from orchestrator.gateway.server import serving
from orchestrator.sandbox import ContainerResult, ContainerSpec, Mount, SandboxBackend
from orchestrator.sandbox.disk import Workdir

if TYPE_CHECKING:
    from orchestrator.executors.seats import Seat, Seats

EXPERIMENT_LABEL = "autoresearch.experiment"
"""Names the experiment a container runs (not known to a container made ahead)."""
ATTEMPT_LABEL = "autoresearch.attempt"
"""Names one try of an experiment (Ray): its container's label and its work folders' prefix."""
EMPTY_TREE = bytes(1024)
"""A tar with no member (its two end blocks): what a seat's folder holds until its attempt comes."""


@dataclass(frozen=True)
class Attempt:
    experiment: int
    tree: bytes
    """The candidate commit as a tar (`git archive`), scorer files included: sealed at the host."""
    contract: Contract
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()
    """GPUs leased by the driver (local); a Ray node uses the ones Ray assigned instead."""
    seccomp: str | None = None
    added: tuple[str, ...] = ()
    """Implementation files the candidate added to the commit it started from: in harness mode
    none of them may stand in for a module found elsewhere (`autoresearch_harness/hook.py`)."""

    @property
    def name(self) -> str:
        """What its work folders are called after: the attempt's id where it has one (Ray)."""
        return self.labels.get(ATTEMPT_LABEL, "work")


@dataclass(frozen=True)
class Trusted:
    """Where the trusted files are on the host that runs the attempt."""

    evaluator: Path
    scorer: Path
    data_root: Path
    """Relative data mounts resolve here (the repository locally, the unpacked bundle on a node)."""


def perform(
    attempt: Attempt,
    sandbox: SandboxBackend,
    workdirs: Workdirs,
    trusted: Trusted,
    seats: Seats | None = None,
) -> ContainerResult:
    """Run the attempt's stages in `sandbox`, each in a fresh capped folder of `workdirs`; the
    run stage in a container made ahead where `seats` has one that fits (executors/seats.py).

    Raises InfraError when the host or its engine failed (never the candidate's result).
    """
    c = attempt.contract
    if seats is not None and (attempt.gpus or c.sandbox.services):
        seats = None  # GPUs are leased per attempt, a gateway is made per attempt
    try:
        with _folder(attempt, workdirs, seats) as (disk, seat):
            mounted = seat.mounted(disk) if seat is not None else (frozenset(), frozenset())
            unpack(attempt.tree, disk.path, writable_by_all=True, skip=mounted[0])
            _seal(c, disk.path)
            files = None  # shared mode: the evaluator imports the candidate's files itself
            if c.evaluator.isolation == "harness":
                files = isolation.implementation_files(disk.path, c.implementation.paths)
            spec = _stage(attempt, disk, trusted, files, mounted[1])
            if seats is not None:  # the next attempt's container, made while this one runs
                labels = {k: v for k, v in attempt.labels.items() if k != EXPERIMENT_LABEL}
                blank = replace(attempt, tree=EMPTY_TREE, added=(), labels=labels)
                seats.want(c, c.sandbox.disk, lambda h: _stage(blank, h.workdir, trusted, files))
            warm = seat.usable(spec) if seat is not None else None
            if seat is not None and warm is None:  # made for another spec: all of it afresh
                return perform(attempt, sandbox, workdirs, trusted, None)
            with serving(c.sandbox.services, c.budget.seconds) as gateway:  # stopped, then read
                result = sandbox.run(replace(gateway.attach(spec), warm=warm))
            result = replace(result, gateway=gateway.figures())
            if c.score is None or result.failed:
                return result
            return _score(attempt, sandbox, workdirs, trusted, result, disk.results)
    except OSError as e:
        raise InfraError(f"preparing the sandbox folder failed: {e}") from e


@contextlib.contextmanager
def _folder(
    attempt: Attempt, workdirs: Workdirs, seats: Seats | None
) -> Iterator[tuple[Workdir, Seat | None]]:
    """The run stage's folder: a seat's, made ahead, or a fresh one."""
    cap = attempt.contract.sandbox.disk
    if seats is None:
        with workdirs.hold(cap, attempt.name) as disk:
            yield disk, None
        return
    with seats.attempt():
        seat = seats.take(attempt.contract)
        if seat is None:
            with workdirs.hold(cap, attempt.name) as disk:
                yield disk, None
            return
        try:
            yield seat.disk, seat
        finally:
            seats.release(seat)


def _stage(
    attempt: Attempt,
    disk: Workdir,
    trusted: Trusted,
    files: list[str] | None,
    skip: frozenset[str] = frozenset(),
) -> ContainerSpec:
    """The run stage's spec: harness mode with the implementation's `files` (the trusted view
    never written at `skip`), else shared."""
    if files is None:
        return _shared_stage(attempt, disk, trusted)
    return _harness_stage(attempt, disk, trusted, files, skip)


def _shared_stage(attempt: Attempt, disk: Workdir, trusted: Trusted) -> ContainerSpec:
    """The evaluator in the candidate's tree, as the candidate's user: scores can be forged."""
    c = attempt.contract
    mounts = _mounts(disk.path, "/workspace", trusted.evaluator, c.evaluator.paths)
    mounts += _data(c.evaluator.data, trusted)
    mounts.append(Mount(disk.results, "/results", read_only=False))
    mounts.append(Mount(harness.mounted(), isolation.HARNESS))  # the library; nothing kept apart
    return _spec(
        attempt, disk, isolation.shared_command(c.evaluator.command), c.budget.seconds, mounts
    )


def _harness_stage(
    attempt: Attempt, disk: Workdir, trusted: Trusted, files: list[str], skip: frozenset[str]
) -> ContainerSpec:
    """The evaluator on the trusted side, the candidate in a worker (executors/isolation.py)."""
    c = attempt.contract
    view = isolation.trusted_view(attempt.tree, disk, files, c.sealed, skip)
    uid, gid = isolation.trusted_user(c.sandbox.user)
    isolation.give_results_to(disk, uid, gid)
    mounts = isolation.mounts(view)
    mounts += _mounts(view, isolation.TRUSTED_ROOT, trusted.evaluator, c.evaluator.paths)
    # read-only in the candidate's copy too: what it changes there is only ever its own
    mounts += _mounts(disk.path, "/workspace", trusted.evaluator, c.evaluator.paths)
    mounts += _data(c.evaluator.data, trusted)
    mounts.append(Mount(disk.results, "/results", read_only=False))
    spec = _spec(attempt, disk, isolation.command(c.evaluator.command), c.budget.seconds, mounts)
    env = {k: v for k, v in spec.env.items() if k != "AUTORESEARCH_SEED"}  # drawn inside
    return replace(
        spec,
        env={**env, **isolation.environment(c, files, attempt.added)},
        user=f"{uid}:{gid}",
        tmpfs=isolation.tmpfs(c, (uid, gid), files),
        worker=isolation.worker(c.sandbox.user),
        # its two processes answer each other on one core (sandbox/cores.py); gVisor's own
        # threads would share that core with them
        one_core=c.sandbox.cpus <= 1 and c.sandbox.runtime == "runc",
    )


def _seal(c: Contract, workspace: Path) -> None:
    """The run stage never sees the scorer or its secret data, even where they live in the repo."""
    remove_paths(workspace, c.sealed)


def _score(
    attempt: Attempt,
    sandbox: SandboxBackend,
    workdirs: Workdirs,
    trusted: Trusted,
    ran: ContainerResult,
    results: Path,
) -> ContainerResult:
    """The sealed stage: the scorer, the run's results (read-only) and the secrets; no implementation."""
    score = attempt.contract.score
    assert score is not None
    with workdirs.hold(attempt.contract.sandbox.disk, attempt.name) as disk:
        handed = hand_over(results, disk.root / "handover", attempt.contract.sandbox.disk)
        if handed.reason() is not None:  # the scorer never runs on what the candidate planted
            return replace(ran, exit_code=1, crash=handed.reason())
        mounts = _mounts(disk.path, "/workspace", trusted.scorer, score.paths)
        mounts += _data(score.data, trusted)
        mounts.append(Mount(disk.root / "handover", "/results", read_only=True))
        scored = sandbox.run(_spec(attempt, disk, score.command, score.seconds, mounts))
    late = f"timeout: the scorer was killed at its budget of {score.seconds:g} s (score.seconds)"
    return replace(
        scored,
        crash=late if scored.timed_out else scored.crash,
        wall_s=ran.wall_s + scored.wall_s,
        peak_memory_bytes=ran.peak_memory_bytes,
        cpu_s=ran.cpu_s,
        workspace_bytes=ran.workspace_bytes,
        run_output=ran.output,
        candidate_output=ran.candidate_output,
        gateway=ran.gateway,
    )


def _mounts(root: Path, target: str, snapshot: Path, paths: list[str]) -> list[Mount]:
    """Trusted files of `snapshot`, read-only over their place under `target` (`root` on the host)."""
    for p in paths:  # Docker needs the mount point to exist
        point = root / p
        if not point.exists():
            point.parent.mkdir(parents=True, exist_ok=True)
            (point.mkdir() if (snapshot / p).is_dir() else point.touch())
    return [Mount(snapshot / p, f"{target}/{p}") for p in paths]


def _data(data: list[DataMount], trusted: Trusted) -> list[Mount]:
    root = trusted.data_root
    return [Mount(m.source if m.source.is_absolute() else root / m.source, m.target) for m in data]


def _spec(
    attempt: Attempt, disk: Workdir, command: str, seconds: float, mounts: list[Mount]
) -> ContainerSpec:
    c = attempt.contract
    env = {**c.sandbox.env, **attempt.env, "AUTORESEARCH_BUDGET_S": f"{seconds:g}"}
    return ContainerSpec(
        workspace=disk.path,
        command=command,
        budget_s=seconds,
        limits=c.sandbox,
        mounts=tuple(mounts),
        env=env,
        labels=attempt.labels,
        disk=disk,
        seccomp=attempt.seccomp,
        gpus=attempt.gpus,
    )
