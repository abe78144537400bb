"""Folders on the host: a tree written from a tar, and removed whole or path by path.

Plain filesystem work, no git (that is `workspace.py`): the executors unpack a
candidate into its work folder, the proposers clear scratch copies.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path


def unpack(
    tree: bytes, dest: Path, *, writable_by_all: bool = False, skip: frozenset[str] = frozenset()
) -> None:
    """Write a tar (a `git archive`, a bundle of trusted files) into `dest`; never at or below a
    path of `skip` (relative to `dest`: what a container already mounted over)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tree)) as tar:
        members = [m for m in tar.getmembers() if not _below(m.name, skip)] if skip else None
        tar.extractall(dest, members=members, filter="tar")
    if writable_by_all:
        # The container's user is not us; the folder's parent is private (0700).
        for dirpath, _dirnames, filenames in os.walk(dest):
            os.chmod(dirpath, 0o777)
            for name in filenames:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    os.chmod(p, os.stat(p).st_mode | 0o666)


def _below(name: str, skip: frozenset[str]) -> bool:
    parts = Path(name).parts
    return any("/".join(parts[:i]) in skip for i in range(1, len(parts) + 1))


def remove_paths(root: Path, rels: list[str] | tuple[str, ...]) -> None:
    """Remove each repo-relative path (a file or a folder) under `root`, if it is there."""
    for rel in rels:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)


def remove_tree(path: Path) -> None:
    """rmtree that also clears read-only bits the sandbox may have left."""
    if not path.exists():
        return

    def _onerror(func, p, _exc):  # type: ignore[no-untyped-def]
        os.chmod(p, 0o700)
        func(p)

    shutil.rmtree(path, onerror=_onerror)
