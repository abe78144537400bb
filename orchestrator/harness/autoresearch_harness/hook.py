"""The import hook of the trusted side: a module of the implementation is a stand-in.

Installed in every trusted Python process of a harness-mode sandbox (by the .pth
file `boot.py` writes), before any other import can happen. When the evaluator
imports a name that resolves to a file of the implementation, it gets a
`RemoteModule`: the real module is imported in the candidate's worker, never
here. The implementation's files are not in the trusted tree at all, so if this
hook were ever missing the import would fail, never run candidate code here.

Configured by the environment `boot.py` sets: AUTORESEARCH_TRUSTED_ROOT (the
trusted tree), AUTORESEARCH_IMPLEMENTATION (the implementation's files, JSON,
repo-relative), AUTORESEARCH_WORKER (the worker's socket) and
AUTORESEARCH_BUDGET_S (how long to wait for it).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .proxy import Connection, RemoteModule

_lock = threading.Lock()
_connection: tuple[int, Connection] | None = None


def connection() -> Connection:
    """This process's session with the candidate's worker (a new one after a fork)."""
    global _connection
    with _lock:
        if _connection is None or _connection[0] != os.getpid():
            path = os.environ.get("AUTORESEARCH_WORKER", "/exchange/worker.sock")
            wait = float(os.environ.get("AUTORESEARCH_BUDGET_S", "60"))
            _connection = (os.getpid(), Connection(path, wait))
        return _connection[1]


class CandidateFinder(importlib.abc.MetaPathFinder):
    """Claims the names that resolve to implementation files (see the module docstring)."""

    def __init__(self, root: str, files: set[str]) -> None:
        self.root = os.path.abspath(root)
        self.files = files
        self.dirs = {os.path.dirname(f) for f in files}
        for f in list(self.dirs):
            while f:
                f = os.path.dirname(f)
                self.dirs.add(f)

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        leaf = name.rpartition(".")[2]
        for entry in path if path is not None else sys.path:
            base = os.path.join(os.path.abspath(entry or os.getcwd()), leaf)
            if os.path.exists(base + ".py") or (os.path.isdir(base) and not self._ours(base)):
                return None  # a real module of the trusted side comes first, as it would
            rel = os.path.relpath(base, self.root)
            if rel.startswith(".."):
                continue
            if rel + "/__init__.py" in self.files:
                spec = importlib.machinery.ModuleSpec(
                    name, _Loader(), origin=f"candidate:{rel}/__init__.py", is_package=True
                )
                spec.submodule_search_locations = [base]
                return spec
            if rel + ".py" in self.files:
                return importlib.machinery.ModuleSpec(name, _Loader(), origin=f"candidate:{rel}.py")
        return None

    def _ours(self, folder: str) -> bool:
        """A folder of the trusted tree that holds implementation files (their package)."""
        return os.path.relpath(folder, self.root) in self.dirs


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        conn = connection()
        path = [os.path.abspath(entry or os.getcwd()) for entry in sys.path]
        target = conn.request("import", name=spec.name, path=path)
        module = RemoteModule(spec.name, conn, target)
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None  # it ran where it was imported: on the candidate's side


def install(environ: Any = os.environ) -> CandidateFinder | None:
    """Put the finder first on sys.meta_path when this is a trusted harness process."""
    root = environ.get("AUTORESEARCH_TRUSTED_ROOT")
    if not root:
        return None
    files = set(json.loads(environ.get("AUTORESEARCH_IMPLEMENTATION", "[]")))
    for finder in sys.meta_path:
        if isinstance(finder, CandidateFinder):
            return finder
    finder = CandidateFinder(root, files)
    sys.meta_path.insert(0, finder)
    return finder


install()
