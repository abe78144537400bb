"""One core of the host for a small experiment's processes, while one is free.

A harness run is two processes that answer each other (the evaluator's, the candidate's
worker), a round trip per call. On two cores each answer wakes the other across cores (on a
virtual machine an interrupt through the hypervisor): a bare socket round trip between two
processes of a one-CPU container measured 39 µs there, 13 µs with both on one core, and a
project's suite through the harness ran 1.5–1.8x faster (more-itertools 55 → 37 s,
cachetools 48 → 26 s). A container of at most one CPU loses nothing by it: its quota is one
core's time anyway.

So each experiment's container of `sandbox.cpus <= 1` leases a core when it starts and gives
it back when it is gone; the harness's boot and worker pin themselves to it (`CORE_ENV`). A
lease is an exclusive `flock` on one file per core in a private folder of this user: nights
and Ray workers on one machine share them, and a dead process's leases end with it. With no
core free (more slots than cores), the container is not pinned: its processes float as
before. The candidate may unpin its own processes; that only gives back what pinning gained.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator.sandbox import ContainerSpec

CORE_ENV = "AUTORESEARCH_CORE"
"""The leased core's number, for the harness to pin to; empty: none (its processes float)."""


@dataclass
class Core:
    cpu: int
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # the flock ends with its last descriptor


def lease(folder: Path | None = None) -> Core | None:
    """A core nobody of this user holds (the highest numbered first: interrupts favour the
    first), or None when all are held or the leases' folder is not this user's alone."""
    folder = folder or Path(tempfile.gettempdir()) / f"autoresearch-cores-{os.getuid()}"
    if not _private(folder):
        return None
    for cpu in sorted(os.sched_getaffinity(0), reverse=True):
        try:
            fd = os.open(
                folder / f"core-{cpu}", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return Core(cpu, fd)
    return None


def _private(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        folder.mkdir(mode=0o700)
    try:
        st = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def variables(spec: ContainerSpec) -> dict[str, str]:
    """The variables to create `spec`'s container with: its own, and the core's name when it
    asks for one (empty until a lease names it: a container made ahead hears it at its go)."""
    return {CORE_ENV: "", **spec.env} if spec.one_core else spec.env


@contextlib.contextmanager
def pinned(spec: ContainerSpec) -> Iterator[ContainerSpec]:
    """`spec` with the core it leased named in its variables (unchanged when it asks for none
    or none is free); the lease ends with the block."""
    core = lease() if spec.one_core else None
    try:
        yield spec if core is None else replace(spec, env={**spec.env, CORE_ENV: str(core.cpu)})
    finally:
        if core is not None:
            core.release()
