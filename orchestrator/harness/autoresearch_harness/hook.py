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
per-call limit).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from . import values
from .modules import RemoteModule, fill_module
from .peer import Gone, Peer
from .seeding import follow_seeding
from .shared import Shared
from .standins import ask, pickled_by
from .text import CandidateGone, CandidateText
from .trusted import TrustedSide

_lock = threading.Lock()
_connection: tuple[int, Peer] | None = None
_finder: CandidateFinder | None = None
GRACE_S = 5.0
"""How much longer than the per-call limit the trusted side waits before the worker counts as gone
(the worker itself ends a call at the limit)."""


def connection() -> Peer:
    """This process's session with the candidate's worker (a new one after a fork)."""
    global _connection
    with _lock:
        if _connection is None or _connection[0] != os.getpid():
            path = os.environ.get("AUTORESEARCH_WORKER", "/exchange/worker.sock")
            wait = float(os.environ.get("AUTORESEARCH_BUDGET_S", "60"))
            call = float(os.environ.get("AUTORESEARCH_CALL_S", "0") or 0)
            root = os.environ.get("AUTORESEARCH_TRUSTED_ROOT", os.getcwd())
            sock = _connect(path, wait)
            shared = Shared(origin=True, text=CandidateText)
            peer = Peer(sock, TrustedSide(root), call + GRACE_S if call > 0 else None, shared)
            _connection = (os.getpid(), peer)
        return _connection[1]


def from_candidate_pickle(data: bytes) -> Any:
    """What a pickled stand-in loads as: the candidate loads its own bytes (never loaded here)."""
    return ask(connection(), "unpickle", data=connection().encode(data))


pickled_by(from_candidate_pickle)


def _connect(path: str, wait_s: float) -> socket.socket:
    """Connect to the worker, waiting for it to come up (the engine starts it just after us)."""
    deadline = time.monotonic() + wait_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise CandidateGone(
                    "CandidateGone", f"no candidate worker answers at {path}"
                ) from None
            time.sleep(0.01)


def request(op: str, **fields: Any) -> Any:
    """Ask the worker (the library's `run`, `start`); the answer decoded as candidate data."""
    peer = connection()
    try:
        return peer.request(op, CandidateText, **fields)
    except Gone as e:
        raise CandidateGone("CandidateGone", str(e)) from None


class CandidateFinder(importlib.abc.MetaPathFinder):
    """Claims the names that resolve to implementation files (see the module docstring)."""

    def __init__(self, root: str, files: set[str]) -> None:
        self.root = os.path.abspath(root)
        self.files = files
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
        spec = importlib.machinery.ModuleSpec(name, _Loader(rel), origin=origin, is_package=package)
        if package:
            spec.submodule_search_locations = list(found.submodule_search_locations or [])
        spec.has_location = True
        self.modules.add(name)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, rel: str) -> None:
        self.rel = rel

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        peer = connection()
        path = [os.path.abspath(entry or os.getcwd()) for entry in sys.path]
        try:
            answer = ask(peer, "import", name=spec.name, file=self.rel, path=path)
        except Gone as e:
            raise CandidateGone("CandidateGone", str(e)) from None
        if not (isinstance(answer, dict) and type(answer.get("hid")) is int):
            raise ImportError(f"{spec.name}: the candidate's worker answered no module")
        module = RemoteModule(spec.name)
        fill_module(module, peer, answer)
        peer.stand_in(answer["hid"], lambda: module, keep=True)
        return module

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
    root = os.path.abspath(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    values.text_types(CandidateText)
    follow_seeding()
    _finder = CandidateFinder(root, files)
    sys.meta_path.insert(0, _finder)
    sys.addaudithook(_audit(files, root))
    return _finder


install()
