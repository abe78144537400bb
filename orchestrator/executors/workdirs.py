"""The capped work folders attempts run in (sandbox/disk.py), made off an experiment's
critical path, and the removal of those a dead process left (`sweep`)."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.folders import remove_tree
from orchestrator.sandbox.disk import Workdir, capped_workdir, unmount
from orchestrator.sandbox.owner import owner_alive, owner_id

OWNER_FILE = "owner"
Leftover = Callable[[Path, OSError], None]
"""Told of a work folder that could not be removed (it goes to the run's event log)."""


class Background:
    """Daemon threads doing work off an experiment's critical path; `join` waits for them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def start(self, work: Callable[[], None]) -> None:
        def run() -> None:
            try:
                work()
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=self.name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    @property
    def busy(self) -> bool:
        """Whether any thread still works."""
        with self._lock:
            return bool(self._threads)

    def join(self, timeout_s: float) -> None:
        """Wait, at most `timeout_s` in all, for every thread, those started meanwhile too."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                threads = list(self._threads)
            if not threads:
                return
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))


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
        self._spares: list[Held] = []
        self._background = Background("workdirs")
        atexit.register(self.close)

    @contextlib.contextmanager
    def hold(self, cap: int, name: str = "work") -> Iterator[Workdir]:
        """A fresh capped folder, named `name-…` unless a spare was ready (OSError when none can be made)."""
        with self._lock:
            spare = next((h for h in self._spares if h.workdir.cap == cap), None)
            if spare is not None:
                self._spares.remove(spare)
        held = spare or Held.make(self.box, cap, name)
        if self.ahead:
            self._background.start(lambda: self._prepare(cap))
        try:
            yield held.workdir
        finally:
            self._background.start(lambda: held.drop(self.leftover))

    def close(self) -> None:
        self._background.join(30)  # a spare still being made lands in the list before we empty it
        with self._lock:
            spares, self._spares = self._spares, []
        for held in spares:
            held.drop(self.leftover)

    def _prepare(self, cap: int) -> None:
        with self._lock:
            if len(self._spares) >= self.SPARES:
                return
        try:
            held = Held.make(self.box, cap)
        except OSError:
            return  # the next attempt makes its own, and says why if it cannot
        with self._lock:
            self._spares.append(held)


@dataclass
class Held:
    parent: Path
    cm: contextlib.AbstractContextManager[Workdir]
    workdir: Workdir
    beside: list[Path] = field(default_factory=list)
    """Folders made for it elsewhere (a gateway's sockets, whose path must be short), removed
    with it."""

    @classmethod
    def make(cls, box: Path, cap: int, name: str = "work") -> Held:
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
        for folder in self.beside:
            shutil.rmtree(folder, ignore_errors=True)
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
