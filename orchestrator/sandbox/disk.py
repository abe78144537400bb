"""A /workspace that cannot fill the host's disk.

Bind mounts have no size limit, so the candidate's folder gets one: as root (CI,
a dedicated box) it is a fresh ext4 filesystem in a sparse image file of exactly
`sandbox.disk` bytes, loop-mounted — writes past the cap fail with ENOSPC inside
the container and the host disk never holds more than the image. Without root,
the folder is plain and the sandbox's watchdog kills the container once the
folder passes the cap (bounded overshoot: one polling interval of writes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.poller import Poller

IMAGE_NAME = "disk.img"
MOUNT_NAME = "fs"


def _can_mount() -> bool:
    return (
        os.geteuid() == 0
        and Path("/dev/loop-control").exists()
        and shutil.which("mkfs.ext4") is not None
        and shutil.which("mount") is not None
    )


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


@dataclass
class Workdir:
    root: Path
    """The capped filesystem (or folder); holds `workspace/` and `results/`."""
    cap: int
    enforced: bool
    """True: a size-limited filesystem; False: a plain folder the sandbox must watch."""

    @property
    def path(self) -> Path:
        """Mounted at /workspace."""
        return self.root / "workspace"

    @property
    def results(self) -> Path:
        """Mounted at /results: what the run stage leaves for a sealed scorer."""
        return self.root / "results"

    def used(self) -> int:
        if self.enforced:
            st = os.statvfs(self.root)
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        return tree_bytes(self.root)

    def full(self) -> bool:
        if self.enforced:
            st = os.statvfs(self.root)
            return st.f_bavail * st.f_frsize < max(1024**2, self.cap // 100)
        return self.used() >= self.cap


def unmount_below(parent: Path) -> None:
    """Unmount any workspace filesystem a killed run left under `parent` (idempotent)."""
    for folder in parent.glob("*"):
        unmount(folder)


def unmount(folder: Path) -> None:
    """Unmount the workspace filesystem of one capped folder, if it is mounted (idempotent)."""
    mnt = folder / MOUNT_NAME
    if os.path.ismount(mnt):
        with contextlib.suppress(subprocess.CalledProcessError):
            _run("umount", "-l", str(mnt))


@contextlib.contextmanager
def capped_workdir(parent: Path, cap: int) -> Iterator[Workdir]:
    """A folder under `parent` that holds at most `cap` bytes; unmounted on exit."""
    mnt = parent / MOUNT_NAME
    mnt.mkdir(mode=0o777)
    enforced = False
    if _can_mount():
        img = parent / IMAGE_NAME
        try:
            with img.open("wb") as f:
                f.truncate(cap)
            _run(
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-O",
                "^has_journal",
                "-E",
                "nodiscard",
                str(img),
            )
            _run("mount", "-o", "loop,nosuid,nodev", str(img), str(mnt))
            enforced = True
            (mnt / "lost+found").rmdir()
            os.chmod(mnt, 0o777)
        except (OSError, subprocess.CalledProcessError):
            if os.path.ismount(mnt):
                _run("umount", "-l", str(mnt))
            enforced = False
    for sub in ("workspace", "results"):
        (mnt / sub).mkdir(mode=0o777)
        os.chmod(mnt / sub, 0o777)
    try:
        yield Workdir(mnt, cap, enforced)
    finally:
        if enforced:
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("umount", str(mnt))
            if os.path.ismount(mnt):
                _run("umount", "-l", str(mnt))
            (parent / IMAGE_NAME).unlink(missing_ok=True)


class DiskWatch(Poller):
    """Kills (with `kill`) a container whose unenforced workspace folder passes its cap."""

    def __init__(self, disk: Workdir, kill: Callable[[], None], interval: float = 0.2) -> None:
        super().__init__(interval, "disk-watch")
        self.disk, self.kill = disk, kill
        self.tripped = False

    def poll(self) -> bool:
        if self.disk.used() < self.disk.cap:
            return True
        self.tripped = True
        self.kill()
        return False
