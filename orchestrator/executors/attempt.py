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

import atexit
import contextlib
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator import harness
from orchestrator.contract.model import Contract, DataMount
from orchestrator.errors import InfraError
from orchestrator.executors import isolation
from orchestrator.executors.handover import hand_over
from orchestrator.folders import remove_paths, remove_tree, unpack
from orchestrator.gateway.server import serving
from orchestrator.sandbox import ContainerResult, ContainerSpec, Mount, SandboxBackend
from orchestrator.sandbox.disk import Workdir, capped_workdir, unmount
from orchestrator.sandbox.owner import owner_alive, owner_id

ATTEMPT_LABEL = "autoresearch.attempt"
"""Names one try of an experiment (Ray): its container's label and its work folders' prefix."""
OWNER_FILE = "owner"

Leftover = Callable[[Path, OSError], None]
"""Told of a work folder that could not be removed (it goes to the run's event log)."""


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


class Workdirs:
    """The capped folders attempts run in, under `box`, kept off an experiment's critical path.

    Making one (a sparse image, mkfs, mount) and removing one (umount, rm) cost about
    20 ms together. With `ahead`, the next folder is made while an attempt runs, up
    to `SPARES` waiting; a used folder is always removed in the background. `close`
    removes the spares and waits for the removals (at the end of a night, and at exit;
    after a SIGKILL, the next start unmounts what is left under `box`).
    """

    SPARES = 4

    def __init__(self, box: Path, leftover: Leftover, *, ahead: bool = True) -> None:
        self.box, self.leftover, self.ahead = box, leftover, ahead
        self._lock = threading.Lock()
        self._spares: list[_Held] = []
        self._threads: set[threading.Thread] = set()
        atexit.register(self.close)

    @contextlib.contextmanager
    def hold(self, cap: int, name: str = "work") -> Iterator[Workdir]:
        """A fresh capped folder, named `name-…` unless a spare was ready (OSError when none can be made)."""
        with self._lock:
            spare = next((h for h in self._spares if h.workdir.cap == cap), None)
            if spare is not None:
                self._spares.remove(spare)
        held = spare or _Held.make(self.box, cap, name)
        if self.ahead:
            self._background(self._prepare, cap)
        try:
            yield held.workdir
        finally:
            self._background(held.drop, self.leftover)

    def close(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for t in threads:  # a spare still being made lands in the list before we empty it
            t.join(timeout=30)
        with self._lock:
            spares, self._spares = self._spares, []
        for held in spares:
            held.drop(self.leftover)

    def _prepare(self, cap: int) -> None:
        with self._lock:
            if len(self._spares) >= self.SPARES:
                return
        try:
            held = _Held.make(self.box, cap)
        except OSError:
            return  # the next attempt makes its own, and says why if it cannot
        with self._lock:
            self._spares.append(held)

    def _background(self, work: Callable[..., None], arg: object) -> None:
        def run() -> None:
            try:
                work(arg)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name="workdirs", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()


@dataclass
class _Held:
    parent: Path
    cm: contextlib.AbstractContextManager[Workdir]
    workdir: Workdir

    @classmethod
    def make(cls, box: Path, cap: int, name: str = "work") -> _Held:
        box.mkdir(mode=0o700, parents=True, exist_ok=True)
        parent = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=box))
        (parent / OWNER_FILE).write_text(owner_id())  # for `sweep`, should this process die
        cm = capped_workdir(parent, cap)
        try:
            return cls(parent, cm, cm.__enter__())
        except BaseException:
            remove_tree(parent)
            raise

    def drop(self, leftover: Leftover) -> None:
        try:
            self.cm.__exit__(None, None, None)
            remove_tree(self.parent)
        except (OSError, subprocess.CalledProcessError) as e:  # e.g. files the sandbox user made
            leftover(self.parent, e if isinstance(e, OSError) else OSError(str(e)))


def sweep(box: Path, stale: Callable[[str], bool]) -> int:
    """Unmount and remove the folders in `box` whose maker died, or whose name `stale` says is
    left over (a lost Ray worker's, a cancelled attempt's); how many."""
    removed = 0
    for folder in box.glob("*"):
        try:
            owner = (folder / OWNER_FILE).read_text().strip()
        except OSError:
            continue  # not one of ours, or still being made
        if owner_alive(owner) and not stale(folder.name.rsplit("-", 1)[0]):
            continue
        unmount(folder)
        with contextlib.suppress(OSError):
            remove_tree(folder)
            removed += 1
    return removed


def perform(
    attempt: Attempt, sandbox: SandboxBackend, workdirs: Workdirs, trusted: Trusted
) -> ContainerResult:
    """Run the attempt's stages in `sandbox`, each in a fresh capped folder of `workdirs`.

    Raises InfraError when the host or its engine failed (never the candidate's result).
    """
    c = attempt.contract
    try:
        with workdirs.hold(c.sandbox.disk, attempt.name) as disk:
            unpack(attempt.tree, disk.path, writable_by_all=True)
            _seal(c, disk.path)
            spec = (
                _harness_stage(attempt, disk, trusted)
                if c.evaluator.isolation == "harness"
                else _shared_stage(attempt, disk, trusted)
            )
            with serving(c.sandbox.services, c.budget.seconds) as gateway:  # stopped, then read
                result = sandbox.run(gateway.attach(spec))
            result = replace(result, gateway=gateway.figures())
            if c.score is None or result.failed:
                return result
            return _score(attempt, sandbox, workdirs, trusted, result, disk.results)
    except OSError as e:
        raise InfraError(f"preparing the sandbox folder failed: {e}") from e


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


def _harness_stage(attempt: Attempt, disk: Workdir, trusted: Trusted) -> ContainerSpec:
    """The evaluator on the trusted side, the candidate in a worker (executors/isolation.py)."""
    c = attempt.contract
    files = isolation.implementation_files(disk.path, c.implementation.paths)
    view = isolation.trusted_view(attempt.tree, disk, files, c.sealed)
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
