"""This trusted process's session with the candidate's worker: made at its first stand-in.

`hook.py` claims the implementation's names; the first module it stands in for
connects to the worker (`AUTORESEARCH_WORKER`, waiting up to AUTORESEARCH_BUDGET_S
for the engine to start it), and every later call of this process goes over
the same session (a new one after a fork).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from types import ModuleType
from typing import Any

from . import values, wire
from .modules import RemoteModule, fill_module
from .peer import Gone, Peer
from .shared import Shared
from .standins import ask, pickled_by
from .text import CandidateGone, CandidateText
from .trusted import TrustedSide

values.text_types(CandidateText)

_lock = threading.Lock()
_connection: tuple[int, Peer] | None = None
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
            spin = wire.spin_s(os.environ)
            root = os.environ.get("AUTORESEARCH_TRUSTED_ROOT", os.getcwd())
            sock = _connect(path, wait)
            shared = Shared(origin=True, text=CandidateText)
            limit = call + GRACE_S if call > 0 else None
            peer = Peer(sock, TrustedSide(root), limit, shared, spin_s=spin)
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


def stand_in_module(name: str, rel: str) -> ModuleType:
    """The implementation's module `name` (file `rel`), imported in the worker: its stand-in here."""
    peer = connection()
    path = [os.path.abspath(entry or os.getcwd()) for entry in sys.path]
    try:
        answer = ask(peer, "import", name=name, file=rel, path=path)
    except Gone as e:
        raise CandidateGone("CandidateGone", str(e)) from None
    if not (isinstance(answer, dict) and type(answer.get("hid")) is int):
        raise ImportError(f"{name}: the candidate's worker answered no module")
    module = RemoteModule(name)
    fill_module(module, peer, answer)
    peer.stand_in(answer["hid"], lambda: module, keep=True)
    return module
