"""The trusted side's guard on imports: a module of the implementation is a stand-in, never run here.

Installed in every trusted Python process of a harness-mode sandbox (by the .pth
file `boot.py` writes), before any other import can happen:

- the repository root comes first on `sys.path`, as pytest's rootdir does for
  `python -m pytest`;
- a finder first on `sys.meta_path` claims every name that resolves to a file
  of the implementation and gives a `RemoteModule` instead: the real module is
  imported in the candidate's worker (`worker.py`) and only its namespace
  crosses; a name that would be found somewhere else (an installed copy, another
  folder) while the implementation holds it is refused with one line naming both
  places, so an installed copy is never tested in the candidate's stead;
- an audit hook refuses to execute code compiled from an implementation file,
  whatever loads it (pytest's assertion rewriter, its conftest and plugin
  loading, `runpy`, `exec`), and doctests of the implementation's modules: the
  implementation's files are in the trusted tree as data (an evaluator reads
  them to measure size or complexity), never as code.

Configured by the environment `boot.py` sets: AUTORESEARCH_TRUSTED_ROOT (the
trusted tree), AUTORESEARCH_IMPLEMENTATION (the implementation's files, JSON,
repo-relative), AUTORESEARCH_WORKER (the worker's socket),
AUTORESEARCH_BUDGET_S (how long to wait for it) and AUTORESEARCH_CALL_S (the
per-call limit). It imports little (a trusted Python that never imports the
candidate, a tool the evaluator runs, starts nearly as fast as without it):
the session with the worker (`session.py`) is made at the first stand-in.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from .seeding import follow_seeding

if TYPE_CHECKING:
    from importlib.abc import Loader

_finder: CandidateFinder | None = None


class CandidateFinder:
    """Claims the names that resolve to implementation files (see the module docstring)."""

    def __init__(self, root: str, files: set[str], added: frozenset[str] = frozenset()) -> None:
        self.root = os.path.abspath(root)
        self.files = files
        self.added = added
        """The implementation files this candidate added (not in the commit it started from)."""
        self.leaves = {os.path.splitext(os.path.basename(f))[0] for f in files}
        for f in files:
            self.leaves.update(os.path.dirname(f).split("/"))
        self.modules: set[str] = set()
        """The names imported as stand-ins so far."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name.rpartition(".")[2] not in self.leaves:
            return None
        found = importlib.machinery.PathFinder.find_spec(name, path)
        origin = found.origin if found is not None else None
        rel = self.relative(origin) if origin else None
        if rel is not None and rel in self.files:
            if "." not in name:
                self._refuse_shadowing(name, rel, found)
            return self._spec(name, origin or "", rel, found)
        if path is None and origin is not None:
            ours = self._implementation(name)
            if ours is not None:
                raise ImportError(
                    f"{name}: this import would load {origin}, not the implementation's "
                    f"{os.path.join(self.root, ours)} — put the implementation's folder first on "
                    "sys.path (PYTHONPATH, or pytest's rootdir), or remove the other copy"
                )
        return None

    def _refuse_shadowing(self, name: str, rel: str, found: Any) -> None:
        """A top-level name the trusted side means for another module never loads the candidate's
        file: a standard library name never, and a name importable elsewhere (an installed
        package) not from a file this candidate added (`pkg/pytest.py` would answer the
        evaluator's own `import pytest`)."""
        other: str | None = None
        if name in sys.stdlib_module_names:
            other = f"the standard library's {name}"
        elif rel in self.added:
            here = os.path.dirname(found.origin)
            if found.submodule_search_locations:
                here = os.path.dirname(here)
            rest = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != here]
            elsewhere = importlib.machinery.PathFinder.find_spec(name, rest)
            if elsewhere is not None:
                other = elsewhere.origin or f"the module {name} found elsewhere"
        if other is not None:
            raise ImportError(
                f"{name}: the implementation's {rel} would shadow {other} — the trusted side "
                "never takes the candidate's file for another module (rename the file)"
            )

    def relative(self, path: str) -> str | None:
        rel = os.path.relpath(os.path.abspath(path), self.root)
        return None if rel.startswith("..") else rel.replace(os.sep, "/")

    def _implementation(self, name: str) -> str | None:
        """The implementation's module or package that a top-level `name` can mean, in any folder
        (never a name of the standard library's)."""
        if name in sys.stdlib_module_names:
            return None
        for rel in sorted(self.files):
            parts = rel.split("/")
            if parts[-1] == f"{name}.py" or (parts[-1] == "__init__.py" and parts[-2:-1] == [name]):
                return rel
        return None

    def _spec(self, name: str, origin: str, rel: str, found: Any) -> importlib.machinery.ModuleSpec:
        package = rel.endswith("/__init__.py")
        loader = cast("Loader", _Loader(rel))  # a loader by its methods: importlib.abc costs 10 ms
        spec = importlib.machinery.ModuleSpec(name, loader, origin=origin, is_package=package)
        if package:
            spec.submodule_search_locations = list(found.submodule_search_locations or [])
        spec.has_location = True
        self.modules.add(name)
        return spec


class _Loader:
    def __init__(self, rel: str) -> None:
        self.rel = rel

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # The session's machinery is imported at the first stand-in, not in every trusted
        # Python (a tool the evaluator runs that never imports the candidate pays nothing):
        # only the standard library and this package, which no candidate file can shadow.
        from .session import stand_in_module

        return stand_in_module(spec.name, self.rel)

    def exec_module(self, module: ModuleType) -> None:
        return None  # it ran where it was imported: on the candidate's side

    def get_source(self, name: str) -> str | None:
        return None  # the candidate's source is data here: read it as a file, never as a module


def _audit(files: set[str], root: str) -> Any:
    """The audit hook (see the module docstring): candidate code never executes here."""
    prefix = root.rstrip("/") + "/"

    def candidate(path: Any) -> bool:
        if not isinstance(path, str) or not path or path.startswith("<"):
            return False
        full = os.path.abspath(path)
        return full.startswith(prefix) and full[len(prefix) :] in files

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "exec":
            path = getattr(args[0], "co_filename", None)
            if candidate(path):
                raise ImportError(
                    f"{path} is the implementation's code: it runs only on the candidate's side "
                    "(import it, and the harness gives a stand-in)"
                )
        elif event == "compile" and len(args) > 1 and isinstance(args[1], str):
            where = args[1]
            if where.startswith("<doctest ") and _finder is not None:
                named = where[len("<doctest ") :].split("[", 1)[0]
                if any(named == m or named.startswith(m + ".") for m in _finder.modules):
                    raise ImportError(
                        f"{named}: a doctest of the implementation is the candidate's code; "
                        "it never runs on the trusted side"
                    )
        elif event == "cpython.run_file" and candidate(args[0]):
            raise ImportError(f"{args[0]} is the implementation's code: it never runs here")

    return hook


def install(environ: Any = os.environ) -> CandidateFinder | None:
    """The guard, in a trusted harness process (see the module docstring)."""
    global _finder
    root = environ.get("AUTORESEARCH_TRUSTED_ROOT")
    if not root or str(os.getuid()) == environ.get("AUTORESEARCH_CANDIDATE_UID"):
        return None
    for finder in sys.meta_path:
        if isinstance(finder, CandidateFinder):
            return finder
    files = set(json.loads(environ.get("AUTORESEARCH_IMPLEMENTATION", "[]")))
    added = frozenset(json.loads(environ.get("AUTORESEARCH_ADDED", "[]")))
    root = os.path.abspath(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    follow_seeding()
    _finder = CandidateFinder(root, files, added)
    sys.meta_path.insert(0, _finder)
    sys.addaudithook(_audit(files, root))
    return _finder


install()
