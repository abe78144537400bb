"""Containers made ahead for the next attempts of a night (sandbox/warm.py): one per attempt
in flight, so the engine's start is off an experiment's critical path.

Each attempt that starts asks for one more seat for its kind (`want`: its contract, for an
experiment), made in the background from its own spec with no candidate files (its
template): a fresh capped work folder holding only the mount points, and a started
container waiting at its gate. The next attempt of the same kind takes it (`take`),
unpacks its candidate into the folder and runs there (attempt.py). The agent's containers
are made ahead the same way (agents/container.py), each on the folder its copy is then
made in. A seat is used only when the attempt's spec is the
template's but for its variables' values, and when every mount point in its folder is
still the inode the container mounted over (`intact`): what the container sees is then
exactly what a fresh container would; anything else and the seat is removed and the
attempt runs in a fresh container. Only on this machine's Docker engine; for experiments,
without GPUs and without services (their gateway is made per attempt).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from orchestrator.executors.isolation import view_of
from orchestrator.executors.workdirs import Background, Held, Leftover
from orchestrator.sandbox import ContainerSpec
from orchestrator.sandbox.disk import Workdir
from orchestrator.sandbox.warm import Warm, discard, make

if TYPE_CHECKING:
    from orchestrator.sandbox.docker import DockerSandbox

Template = Callable[[Held], ContainerSpec]
"""The spec of an attempt like the one that asked, on a fresh folder with no candidate in it
(and what else it mounts, made beside it: `Held.beside`)."""


@dataclass(eq=False)
class Seat:
    key: Hashable
    """What it was made for: attempts of one contract, or the agent's commands."""
    held: Held
    warm: Warm
    points: dict[Path, tuple[int, int]]
    """Each mount point inside the folder (host path) and the inode the container mounted over."""

    @property
    def disk(self) -> Workdir:
        return self.held.workdir

    def mounted(self, disk: Workdir) -> tuple[frozenset[str], frozenset[str]]:
        """The mount points below the folder's workspace, and below its trusted view (relative
        paths): an attempt's files are never written there (the container mounted over them)."""
        view = view_of(disk)
        return _below(self.points, disk.path), _below(self.points, view)

    def usable(self, spec: ContainerSpec) -> Warm | None:
        """The container, when `spec` (the attempt's, on this folder) is what it was made for
        and the folder's mount points are untouched; else None."""
        return self.warm if self.warm.fits(spec) and self.intact() else None

    def intact(self) -> bool:
        for path, inode in self.points.items():
            try:
                st = os.lstat(path)
            except OSError:
                return False
            if (st.st_dev, st.st_ino) != inode:
                return False
        return True


def _below(points: dict[Path, tuple[int, int]], root: Path) -> frozenset[str]:
    return frozenset(p.relative_to(root).as_posix() for p in points if p.is_relative_to(root))


def mount_points(spec: ContainerSpec) -> dict[Path, tuple[int, int]]:
    """The host paths of the spec's mounts that lie inside another bind mount of it, with
    their inodes now (the container mounted over these)."""
    binds = {"/workspace": spec.workspace, **{m.target: m.source for m in spec.mounts}}
    out: dict[Path, tuple[int, int]] = {}
    for target in [*binds, *spec.tmpfs]:
        inner = PurePosixPath(target)
        for outer, source in binds.items():
            if outer != target and inner.is_relative_to(outer):
                path = Path(source) / inner.relative_to(outer)
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    out[path] = (st.st_dev, st.st_ino)
    return out


class Seats:
    """The seats of one executor (or agent); thread-safe. `each`: seats kept for each attempt
    in flight; `makers`: how many are made at once (None: no bound)."""

    def __init__(
        self,
        sandbox: DockerSandbox,
        box: Path,
        leftover: Leftover,
        *,
        each: int = 1,
        makers: int | None = None,
    ) -> None:
        self.sandbox, self.box, self.leftover, self.each = sandbox, box, leftover, each
        self._makers = threading.BoundedSemaphore(makers) if makers else None
        self._lock = threading.Lock()
        self._ready: list[Seat] = []
        self._making = 0
        self._in_flight = 0
        self._generation = 0
        self._background = Background("seats")
        atexit.register(self.close)  # an owner that never closes it (a killed one: `reap`)

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Count an attempt in flight: each keeps one seat made ahead for its successor."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def take(self, key: Hashable) -> Seat | None:
        with self._lock:
            seat = next((s for s in self._ready if s.key == key), None)
            if seat is not None:
                self._ready.remove(seat)
        return seat

    def release(self, seat: Seat) -> None:
        """After its attempt: its container removed if no run took it, its folder dropped."""
        discard(self.sandbox, seat.warm)
        self._background.start(lambda: seat.held.drop(self.leftover))

    def want(self, key: Hashable, cap: int, template: Template) -> None:
        """One more seat for `key`, made in the background, unless `each` per attempt in flight
        are ready or being made."""
        with self._lock:
            if len(self._ready) + self._making >= self.each * self._in_flight:
                return
            self._making += 1
            generation = self._generation
        self._background.start(lambda: self._make(key, cap, template, generation))

    def _make(self, key: Hashable, cap: int, template: Template, generation: int) -> None:
        with self._makers or contextlib.nullcontext():
            if generation != self._generation:  # cleared while it waited its turn
                with self._lock:
                    self._making -= 1
                return
            self._make_now(key, cap, template, generation)

    def _make_now(self, key: Hashable, cap: int, template: Template, generation: int) -> None:
        seat = None
        try:
            held = Held.make(self.box, cap, "ahead")
            try:
                spec = template(held)
                warm = make(self.sandbox, spec)
                seat = Seat(key, held, warm, mount_points(spec))
            except Exception:  # only ever a head start: the attempt runs anyway
                held.drop(self.leftover)
        except OSError:
            pass  # the next attempt runs in a fresh container, and says why if it cannot
        finally:
            with self._lock:
                self._making -= 1
                keep = seat is not None and generation == self._generation
                if keep and seat is not None:
                    self._ready.append(seat)
        if seat is not None and not keep:
            self.release(seat)

    def clear(self) -> None:
        """Remove every seat (the night was cancelled, or ends); those being made are removed
        when they are."""
        with self._lock:
            ready, self._ready = self._ready, []
            self._generation += 1
        for seat in ready:
            self.release(seat)

    def close(self) -> None:
        """`clear`, then wait for what is being made or dropped (the end of a night)."""
        self.clear()
        self._background.join(60)
        self.sandbox.remove_orphans()  # what the engine could not remove while it was away
