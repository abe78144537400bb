"""Paths in the user's repository that must stay in it: refused when a symbolic link leads out.

A cloned repository may hold links (tracked or not): `autoresearch/` pointing at
a folder elsewhere, a dangling `autoresearch.toml` pointing at a file that does
not exist yet, `.autoresearch` pointing at another disk. Writing there would
write outside the repository — `init`'s files over someone's, the run folder
(ledger, logs, scratch copies) where nobody looks. A link that stays inside the
repository is followed as usual.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import UserError


def _inside(path: Path, top: Path) -> bool:
    try:
        return path.resolve().is_relative_to(top)
    except (OSError, RuntimeError):  # a loop of links leads nowhere we would write
        return False


def within(root: Path, path: Path, what: str) -> Path:
    """`path` (`root` / something), or UserError naming the link that leads it out of `root`."""
    top = root.resolve()
    if _inside(path, top):
        return path
    here = root
    for part in path.relative_to(root).parts:
        here = here / part
        if here.is_symlink() and not _inside(here, top):
            raise UserError(
                f"{what}: {here} is a symbolic link to {os.readlink(here)}, outside the "
                f"repository {root} — remove the link (or make it a folder or file of the repository)"
            )
    raise UserError(f"{what}: {path} is outside the repository {root} — name a path inside it")
