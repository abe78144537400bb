"""One attempt at running a frozen candidate, wherever a sandbox is: this machine or a node.

An `Attempt` is plain data (it pickles: it is what travels to a Ray node): the
candidate's tree as the tar `git archive` wrote, the contract, and the figures
the driver chose (seed, labels, GPUs). `perform` turns it into a result on the
host it runs on: a fresh capped folder holding `workspace/` (the tree, the
trusted files mounted read-only over it) and `results/`; with a `[score]` stage,
a second fresh container then runs the trusted scorer with the run stage's
`/results` read-only and the secret data read-only — and without the
implementation; only its metrics count.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.contract import Contract, DataMount
from orchestrator.errors import InfraError
from orchestrator.sandbox import Mount, RunResult, RunSpec, SandboxBackend
from orchestrator.sandbox.disk import Workdir, capped_workdir
from orchestrator.workspace import remove_tree, unpack

Leftover = Callable[[Path, OSError], None]


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


@dataclass(frozen=True)
class Trusted:
    """Where the trusted files are on the host that runs the attempt."""

    evaluator: Path
    scorer: Path
    data_root: Path
    """Relative data mounts resolve here (the repository locally, the unpacked bundle on a node)."""


def perform(attempt: Attempt, sandbox: SandboxBackend, box: Path, trusted: Trusted,
            leftover: Leftover) -> RunResult:  # fmt: skip
    """Run the attempt's stages in `sandbox`, in fresh folders under `box`; removes them after.

    Raises InfraError when the host or its engine failed (never the candidate's result).
    """
    c = attempt.contract
    parent = _folder(box, attempt.experiment)
    try:
        with capped_workdir(parent, c.sandbox.disk) as disk:
            unpack(attempt.tree, disk.path, writable_by_all=True)
            _seal(c, disk.path)
            mounts = _mounts(disk, trusted.evaluator, c.evaluator.paths, c.evaluator.data, trusted)
            mounts.append(Mount(disk.results, "/results", read_only=False))
            result = sandbox.run(
                _spec(attempt, disk, c.evaluator.command, c.budget.seconds, mounts)
            )
            if c.score is None or failed(result):
                return result
            return _score(attempt, sandbox, box, trusted, leftover, result, disk.results)
    except OSError as e:
        raise InfraError(f"preparing the sandbox folder failed: {e}") from e
    finally:
        _cleanup(parent, leftover)


def failed(r: RunResult) -> bool:
    return r.timed_out or r.oom_killed or r.disk_full or r.exit_code != 0


def _folder(box: Path, experiment: int) -> Path:
    box.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{experiment:04d}-", dir=box))


def _cleanup(parent: Path, leftover: Leftover) -> None:
    try:
        remove_tree(parent)
    except OSError as e:  # e.g. files the sandbox user made that we may not delete
        leftover(parent, e)


def _seal(c: Contract, workspace: Path) -> None:
    """The run stage never sees the scorer or its secret data, even where they live in the repo."""
    if c.score is None:
        return
    hidden = list(c.score.paths) + [
        str(m.source) for m in c.score.data if not m.source.is_absolute()
    ]
    for rel in hidden:
        path = workspace / rel
        if path.is_dir():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)


def _score(attempt: Attempt, sandbox: SandboxBackend, box: Path, trusted: Trusted, leftover: Leftover,
           ran: RunResult, results: Path) -> RunResult:  # fmt: skip
    """The sealed stage: the scorer, the run's results (read-only) and the secrets; no implementation."""
    score = attempt.contract.score
    assert score is not None
    parent = _folder(box, attempt.experiment)
    try:
        with capped_workdir(parent, attempt.contract.sandbox.disk) as disk:
            mounts = _mounts(disk, trusted.scorer, score.paths, score.data, trusted)
            mounts.append(Mount(results, "/results", read_only=True))
            scored = sandbox.run(_spec(attempt, disk, score.command, score.seconds, mounts))
    finally:
        _cleanup(parent, leftover)
    return replace(scored, wall_s=ran.wall_s + scored.wall_s, peak_memory_bytes=ran.peak_memory_bytes,
                   cpu_s=ran.cpu_s, workspace_bytes=ran.workspace_bytes, run_output=ran.output)  # fmt: skip


def _mounts(disk: Workdir, snapshot: Path, paths: list[str], data: list[DataMount],
            trusted: Trusted) -> list[Mount]:  # fmt: skip
    mounts = [Mount(snapshot / p, f"/workspace/{p}") for p in paths]
    for p in paths:  # Docker needs the mount point to exist
        target = disk.path / p
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.mkdir() if (snapshot / p).is_dir() else target.touch())
    root = trusted.data_root
    mounts += [
        Mount(m.source if m.source.is_absolute() else root / m.source, m.target) for m in data
    ]
    return mounts


def _spec(attempt: Attempt, disk: Workdir, command: str, seconds: float,
          mounts: list[Mount]) -> RunSpec:  # fmt: skip
    c = attempt.contract
    env = {**c.sandbox.env, **attempt.env, "AUTORESEARCH_BUDGET_S": f"{seconds:g}"}
    return RunSpec(
        workspace=disk.path, command=command, budget_s=seconds, limits=c.sandbox, mounts=tuple(mounts),
        env=env, labels=attempt.labels, disk=disk, seccomp=attempt.seccomp, gpus=attempt.gpus,
    )  # fmt: skip
