"""The agent's copy of the best commit: a capped filesystem of its own, read back checked.

Each proposal's copy is a fresh folder under the run's `agent/` box, made like an
experiment's workspace (sandbox/disk.py): a loop-mounted ext4 of exactly `agent.disk`
bytes where the host allows it (root), so a CLI that writes past it gets ENOSPC and the
host's disk never holds more; elsewhere a plain folder the sandbox's watchdog kills the
container over. The copy is a throwaway git repository (a CLI that runs git never touches
the user's history) and is never given to git on the host again: its `.git` may hold
anything the CLI wrote there.

Reading it back refuses, before any of it reaches the scratch checkout, what no proposal
can be: a FIFO, a socket or a device file, a nested repository (a `.git` below the top),
a file it cannot read. That proposal is refused; the night goes on. The scratch then holds
exactly the copy's files (deletions included). A killed night's copies are unmounted and
removed by the next one (`sweep`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from orchestrator.errors import InfraError, ProposalRefused, UserError
from orchestrator.executors.workdirs import Workdirs, sweep
from orchestrator.folders import remove_tree
from orchestrator.sandbox.disk import Workdir

_GIT_ID = [
    "-c",
    "user.name=autoresearch",
    "-c",
    "user.email=autoresearch@localhost",
    "-c",
    "commit.gpgsign=false",
]
_FULL = (errno.ENOSPC, errno.EDQUOT)
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


class Copies:
    """Where a run's agent copies are made: `hold(scratch, cap)` for each proposal."""

    def __init__(self, box: Path, say: Callable[[str], None] = print) -> None:
        self.say = say
        swept = sweep(box, lambda _name: False)
        if swept:
            say(f"removed {swept} agent cop(ies) a killed run left")
        self.box = box
        self.workdirs = Workdirs(box, self.leftover, ahead=False)

    def leftover(self, folder: Path, error: OSError) -> None:
        self.say(
            f"warning: could not remove the agent's copy {folder} ({error}); remove it by hand"
        )

    @contextlib.contextmanager
    def hold(self, scratch: Path, cap: int, made: Workdir | None = None) -> Iterator[Workdir]:
        """A capped folder whose `path` holds `scratch` as a one-commit git repository: `made`
        (an empty one made ahead, its owner removes it) or a new one."""
        with contextlib.ExitStack() as stack:
            disk = made
            try:
                disk = disk or stack.enter_context(self.workdirs.hold(cap, "agent"))
            except OSError as e:  # the host could not make the folder: retried
                if e.errno in _FULL:
                    raise
                raise InfraError(f"the agent's copy could not be made: {e}") from e
            _fill(scratch, disk.path, cap)
            yield disk


def _fill(scratch: Path, work: Path, cap: int) -> None:
    too_small = UserError(
        f"the best commit and its git history do not fit agent.disk = {cap} bytes — raise agent.disk"
    )
    try:
        shutil.copytree(scratch, work, symlinks=True, dirs_exist_ok=True)
    except OSError as e:
        if e.errno in _FULL or "No space left" in str(e):
            raise too_small from None
        raise
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "best so far", "--allow-empty"]):
        proc = subprocess.run(["git", *_GIT_ID, *args], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            if "No space left" in proc.stderr:
                raise too_small
            raise OSError(f"git {args[0]} in the agent's copy failed: {proc.stderr.strip()[-200:]}")


def _entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path below `root` but its top `.git`, parents before children, not following links."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            for entry in it:
                if not rel and entry.name == ".git":
                    continue
                path = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                yield path, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)


def _refusal(rel: str, st: os.stat_result) -> str | None:
    """Why `rel` cannot be part of a proposal, or None."""
    name = rel.rsplit("/", 1)[-1]
    if name == ".git":
        where = rel.rsplit("/", 1)[0]
        return f"the agent left a nested git repository at {where}/ — a proposal is plain files"
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        return f"the agent left {kind} at {rel} — a proposal is regular files only"
    return None


def read_back(work: Path, scratch: Path, description: str = "") -> None:
    """Make `scratch` hold exactly the files of `work` (no top `.git`).

    Raises ProposalRefused for what no proposal can hold (nothing of it is copied then);
    OSError when the host's own disk is full (the night pauses on that)."""
    try:
        entries = list(_entries(work))
    except OSError as e:
        _unreadable(e, description)
    for rel, st in entries:
        why = _refusal(rel, st)
        if why is not None:
            raise ProposalRefused(why, description)
    remove_tree(scratch)
    scratch.mkdir(parents=True)
    for rel, st in entries:
        src, dst = work / rel, scratch / rel
        try:
            if stat.S_ISDIR(st.st_mode):
                dst.mkdir()
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)
        except OSError as e:
            _unreadable(e, description, rel)


def _unreadable(e: OSError, description: str, rel: str = "") -> NoReturn:
    if e.errno in _FULL:
        raise e
    where = f" at {rel}" if rel else ""
    raise ProposalRefused(
        f"the agent's copy could not be read back{where}: {e.strerror or e}", description
    ) from None
