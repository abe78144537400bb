"""The harness library's home in the package: mounted read-only at /harness in every
harness-mode container (see README.md). Nothing here is imported by the orchestrator
at run time except to find the folder.

`mounted()` is what is mounted: a copy of this folder with its bytecode compiled once,
so the evaluator and the candidate's worker do not compile ~5,000 lines of harness at
every experiment (the mount is read-only: Python could not keep what it compiled). The
copy lives in the user's cache folder, named by a digest of the sources and of this
Python's bytecode version; the bytecode is unchecked-hash (never re-validated against
the copy's sources, which are the same bytes). A Python of another version in the image
finds no bytecode of its own there and compiles the sources, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import py_compile
import shutil
import stat
import tempfile
import threading
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
"""The sources; `autoresearch_harness` is importable from there."""
_PACKAGE = "autoresearch_harness"
_lock = threading.Lock()
_made: Path | None = None


def mounted() -> Path:
    """The folder to mount at /harness: the compiled copy, else (no cache folder of ours can
    be made) the sources themselves."""
    global _made
    with _lock:
        if _made is None:
            try:
                _made = _compiled_copy()
            except OSError:
                _made = HARNESS_DIR
        return _made


def _sources() -> list[Path]:
    return sorted((HARNESS_DIR / _PACKAGE).glob("*.py"))


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base) / "autoresearch" / "harness"
    root.mkdir(parents=True, exist_ok=True)
    if root.lstat().st_uid == os.getuid():
        root.chmod(0o755)  # whatever the umask: only we write here
    return root


def _ours(path: Path) -> bool:
    """Made by this user and writable by no one else: nothing another user planted."""
    st = path.lstat()
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _compiled_copy() -> Path:
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
    for path in _sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    root = _cache_root()
    final = root / digest.hexdigest()[:20]
    if final.exists():
        if _ours(final) and _ours(final / _PACKAGE):
            return final
        raise OSError(f"{final} is not this user's alone")
    if not _ours(root):
        raise OSError(f"{root} is not this user's alone")
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    try:
        package = staging / _PACKAGE
        package.mkdir()
        for path in _sources():
            shutil.copyfile(path, package / path.name)
            compiled = importlib.util.cache_from_source(str(package / path.name))
            py_compile.compile(str(package / path.name), cfile=compiled,
                               dfile=f"/harness/{_PACKAGE}/{path.name}", doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)  # fmt: skip
            for made in (package / path.name, Path(compiled)):
                made.chmod(0o644)
        for folder in (staging, package, package / "__pycache__"):
            folder.chmod(0o755)  # the sandbox's users read it; only we write it
        os.rename(staging, final)
    except OSError:
        if not final.exists():
            raise
        # another process of ours made it meanwhile
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    if not (_ours(final) and _ours(final / _PACKAGE)):
        raise OSError(f"{final} is not this user's alone")
    return final
