"""The rules a proposal's change must keep before it may run (and later merge).

Only `implementation.paths` may change; never a git control file; only regular
files (no symlink, no submodule, no mode change, no new executable); no binary;
no file over `max_file_bytes`. Checked on the staged index of a freeze, with
git's own view of the change, before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.contract.model import Implementation
from orchestrator.contract.paths import matches_any
from orchestrator.errors import ProposalRefused

_REGULAR = {"100644", "100755"}


@dataclass(frozen=True)
class Change:
    path: str
    status: str
    """git's letter: A(dded), M(odified), D(eleted), T(ype changed)."""
    old_mode: str
    new_mode: str
    new_blob: str


Sizes = Callable[[list[str]], list[int]]
Contents = Callable[[list[str]], list[bytes | None]]


def validate(changes: list[Change], impl: Implementation, sizes: Sizes, contents: Contents) -> None:
    """Raise ProposalRefused, naming the file and the rule, for the first change that breaks one."""
    if not changes:
        raise ProposalRefused("the proposal changes nothing")
    for c in changes:
        _check_path(c, impl)
        if c.status != "D":
            _check_mode(c)
    _check_blobs([c for c in changes if c.status != "D"], impl, sizes, contents)


def _check_path(c: Change, impl: Implementation) -> None:
    if any(part.startswith(".git") for part in c.path.split("/")):
        raise ProposalRefused(
            f"{c.path}: git control files (.git*, .gitattributes, .gitmodules) may never change"
        )
    if not matches_any(c.path, impl.paths):
        raise ProposalRefused(f"{c.path} is outside implementation.paths ({', '.join(impl.paths)})")


def _check_mode(c: Change) -> None:
    if c.new_mode == "120000":
        raise ProposalRefused(f"{c.path}: symlinks are not allowed")
    if c.new_mode not in _REGULAR:
        raise ProposalRefused(f"{c.path}: only regular files are allowed (mode {c.new_mode})")
    if c.status == "A" and c.new_mode == "100755":
        raise ProposalRefused(f"{c.path}: new files may not be executable")
    if c.status in ("M", "T") and c.old_mode != c.new_mode:
        raise ProposalRefused(f"{c.path}: file mode may not change ({c.old_mode} → {c.new_mode})")


def _check_blobs(
    changes: list[Change], impl: Implementation, sizes: Sizes, contents: Contents
) -> None:
    """Size caps and no binaries: one size query, then the contents of what fits."""
    if not changes:
        return
    for c, size in zip(changes, sizes([c.new_blob for c in changes]), strict=True):
        if size > impl.max_file_bytes:
            raise ProposalRefused(
                f"{c.path} is {size} bytes, over implementation.max_file_bytes={impl.max_file_bytes}"
            )
    for c, data in zip(changes, contents([c.new_blob for c in changes]), strict=True):
        if data is not None and b"\0" in data[:8192]:
            raise ProposalRefused(f"{c.path}: binary files are not allowed")
