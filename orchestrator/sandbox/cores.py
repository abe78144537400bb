"""One core of the host for a small experiment's processes.

A harness run is two processes that answer each other (the evaluator's, the candidate's
worker), a round trip per call. On two cores each answer wakes the other across cores (on a
virtual machine an interrupt through the hypervisor): a bare socket round trip between two
processes of a one-CPU container measured 39 µs there, 13 µs with both on one core, and a
project's suite through the harness ran 1.5–1.8x faster (more-itertools 55 → 37 s,
cachetools 48 → 26 s). A container of at most one CPU loses nothing by it: its quota is one
core's time anyway.

So each experiment's container of `sandbox.cpus <= 1` leases a core when it starts and gives
it back when it is gone; the harness's boot and worker pin themselves to it (`CORE_ENV`). The
core is the one this user's experiments hold least: with no more slots than cores each has
one of its own, with more they share (as they would share floating). A lease is an exclusive
`flock` on one of `SHARES` files per core in a private folder of this user: nights and Ray
workers on one machine count each other's, and a dead process's leases end with it. The
candidate may unpin its own processes; that only gives back what pinning gained.
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
SHARES = 4
"""Most experiments on one core: with more slots than cores they share the least held ones, so
every experiment is measured the same way (pinned); past this many a core, they float."""


@dataclass
class Core:
    cpu: int
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # the flock ends with its last descriptor


def lease(folder: Path | None = None) -> Core | None:
    """A share of the core that this user's experiments hold least (among equals the highest
    numbered: interrupts favour the first), or None when every core has `SHARES` holders or the
    leases' folder is not this user's alone."""
    folder = folder or Path(tempfile.gettempdir()) / f"autoresearch-cores-{os.getuid()}"
    if not _private(folder):
        return None
    cpus = sorted(os.sched_getaffinity(0), reverse=True)
    try:
        with _choosing(folder):  # one chooser at a time: two slots starting at once take two cores
            held = {cpu: _held(folder, cpu) for cpu in cpus}
            for cpu in sorted(cpus, key=lambda c: len(held[c])):
                for share in sorted(set(range(SHARES)) - held[cpu]):
                    fd = _lock(folder / f"core-{cpu}.{share}")
                    if fd is not None:
                        return Core(cpu, fd)
    except OSError:  # the folder went away under us: this one floats
        pass
    return None


@contextlib.contextmanager
def _choosing(folder: Path) -> Iterator[None]:
    """The folder's chooser lock, across threads and processes (waited for: it is held briefly)."""
    fd = os.open(folder / "choosing", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
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


def variables(spec: ContainerSpec) -> dict[str, str]:
    """The variables to create `spec`'s container with: its own, and the core's name when it
    asks for one (empty until a lease names it: a container made ahead hears it at its go)."""
    return {CORE_ENV: "", **spec.env} if spec.one_core else spec.env


@contextlib.contextmanager
def pinned(spec: ContainerSpec, here: bool) -> Iterator[ContainerSpec]:
    """`spec` with the core it leased named in its variables (unchanged when it asks for none,
    when none is free, or when its engine is not `here`: another machine's cores are not ours to
    count); the lease ends with the block."""
    core = lease() if spec.one_core and here else None
    try:
        yield spec if core is None else replace(spec, env={**spec.env, CORE_ENV: str(core.cpu)})
    finally:
        if core is not None:
            core.release()
