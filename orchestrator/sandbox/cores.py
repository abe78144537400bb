"""One core of the host for a harness run's two processes.

A harness run is two processes that answer each other (the evaluator's, the candidate's
worker), a round trip per call. On two cores each answer wakes the other across cores (on a
virtual machine an interrupt through the hypervisor): a bare socket round trip between two
processes of a one-CPU container measured 39 µs there, 13 µs with both on one core, and a
project's suite through the harness ran 1.5–1.8x faster (more-itertools 55 → 37 s,
cachetools 48 → 26 s). A container of at most one CPU loses nothing by it: its quota is one
core's time anyway.

So a harness-mode container of `sandbox.cpus <= 1` under runc (`ContainerSpec.one_core`) is
given one core when it starts and gives it back when it is gone, as its cgroup's cpuset: the
engine enforces it, so no process inside can move to another core (onto a neighbour's). The
core is the one this user's experiments hold least: with no more slots than cores each has
one of its own, with more they share (as they would share floating). A lease is an exclusive
`flock` on one of `SHARES` files per core in a private folder of this user in the temporary
folder: nights and Ray workers of the user on the machine count each other's, and a dead
process's leases end with it. Anything unusual (no such folder, a chooser that does not let
go, no affinity call on this system) and the container floats, as every container did before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from docker.errors import APIError

from orchestrator.errors import InfraError
from orchestrator.sandbox import ContainerSpec

if TYPE_CHECKING:
    from docker.models.containers import Container

FOLDER = Path(tempfile.gettempdir()) / f"autoresearch-cores-{os.getuid()}"
SHARES = 4
"""Most experiments on one core: with more slots than cores they share the least held ones;
past this many a core, they float."""
CHOOSE_S = 1.0
"""How long a lease waits for another chooser before its container floats."""


@contextlib.contextmanager
def onto(spec: ContainerSpec, here: bool) -> Iterator[ContainerSpec]:
    """`spec` with the core leased to it for the block (`core`) when it asks for one, its
    engine is `here` (another machine's cores are not ours to count) and one can be had."""
    held = lease() if spec.one_core and here else None
    try:
        yield replace(spec, core=held.cpu if held else None)
    finally:
        if held is not None:
            held.release()


@dataclass
class Lease:
    cpu: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # the flock ends with its last descriptor
            self.fd = -1


def lease(folder: Path | None = None) -> Lease | None:
    """A share of the core this user's experiments hold least (among equals the highest
    numbered: interrupts favour the first); None when every core has `SHARES` holders or
    anything is unusual."""
    folder = folder or FOLDER
    if not hasattr(os, "sched_getaffinity") or not _private(folder):
        return None
    cpus = sorted(os.sched_getaffinity(0), reverse=True)
    try:
        with _choosing(folder):  # one chooser at a time: two slots starting at once take two cores
            held = {cpu: _held(folder, cpu) for cpu in cpus}
            for cpu in sorted(cpus, key=lambda c: len(held[c])):
                for share in sorted(set(range(SHARES)) - held[cpu]):
                    fd = _lock(folder / f"core-{cpu}.{share}")
                    if fd is not None:
                        return Lease(cpu, fd)
    except OSError:  # the folder went, or a chooser held on past CHOOSE_S: this one floats
        pass
    return None


@contextlib.contextmanager
def _choosing(folder: Path) -> Iterator[None]:
    """The folder's chooser lock, across threads and processes (held for a moment; raises
    OSError past `CHOOSE_S`, a chooser that was stopped while it chose)."""
    fd = os.open(folder / "choosing", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + CHOOSE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        yield
    finally:
        os.close(fd)


def _held(folder: Path, cpu: int) -> set[int]:
    """The shares of `cpu` someone holds now (a share we could take is given straight back)."""
    held = set()
    for share in range(SHARES):
        fd = _lock(folder / f"core-{cpu}.{share}")
        if fd is None:
            held.add(share)
        else:
            os.close(fd)
    return held


def _lock(path: Path) -> int | None:
    """A descriptor holding `path`'s exclusive flock, or None when another holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _private(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700)
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


class Moving:
    """A container made ahead (created with no core) moved onto its leased core, the engine's
    cpuset: asked for just before it goes, waited for before the candidate's worker starts, so
    the engine's ~20 ms answer overlaps the evaluator's boot instead of lengthening the run."""

    def __init__(self, container: Container, spec: ContainerSpec) -> None:
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        if spec.warm is not None and spec.core is not None:
            self._thread = threading.Thread(
                target=self._move, args=(container, spec.core), name="cpuset", daemon=True
            )
            self._thread.start()

    def _move(self, container: Container, cpu: int) -> None:
        try:
            container.update(cpuset_cpus=str(cpu))
        except (APIError, requests.RequestException) as e:
            self._error = e

    def wait(self) -> None:
        """Raises InfraError when the engine did not move it (the attempt is retried)."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise InfraError(f"moving the container onto its core failed: {self._error}")
