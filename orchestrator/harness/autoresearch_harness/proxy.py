"""The trusted side's stand-ins for what the candidate holds: modules, objects, calls.

A `Connection` is one session with the candidate's worker. A `RemoteObject` is a
handle to an object that stays on the candidate's side: calling it, reading an
attribute, indexing or iterating it is a request; what comes back is plain data
(strings as `CandidateText`) or another handle. A handle is never compared,
hashed or printed by asking the candidate: `==` is identity and `repr` names the
handle, so a candidate cannot answer "yes, equal" or write our output.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from types import ModuleType
from typing import Any

from . import wire
from .text import CandidateGone, CandidateText, candidate_error


class Connection:
    """One session with the candidate's worker, shared by the threads of this process."""

    def __init__(self, path: str, wait_s: float) -> None:
        self.sock = _connect(path, wait_s)
        self._reader = self.sock.makefile("rb")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._released: list[int] = []
        self._gone: str | None = None

    def request(self, op: str, **fields: Any) -> Any:
        """Ask the worker; its answer decoded, or the candidate's error raised here."""
        with self._lock:
            if self._gone is not None:
                raise CandidateGone("CandidateGone", self._gone)
            message = {"id": next(self._ids), "op": op, **fields}
            if self._released:
                message["release"], self._released = self._released, []
            try:
                wire.send(self.sock, message)
                reply = wire.receive(self._reader)
            except (OSError, wire.WireError) as e:
                reply, why = None, f"the wire broke ({type(e).__name__})"
            else:
                why = "the candidate's worker ended (it exited or was killed)"
            if reply is None:
                self._gone = why
                raise CandidateGone("CandidateGone", why)
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise candidate_error(str(err.get("type", "Exception")), str(err.get("message", "")))
        try:
            return wire.decode(reply.get("ok"), self.remote, CandidateText)
        except (wire.WireError, TypeError, ValueError) as e:
            raise CandidateGone(
                "CandidateGone", f"the candidate sent a malformed answer: {e}"
            ) from None

    def remote(self, handle: int) -> RemoteObject:
        return RemoteObject(self, handle)

    def outgoing(self, value: Any) -> int:
        """A handle this session gave us may go back to the candidate; nothing else may."""
        if isinstance(value, RemoteObject) and value._conn is self:
            return value._handle
        raise TypeError(
            f"a {type(value).__name__} cannot be sent to the candidate: only plain data crosses"
        )

    def encode(self, value: Any) -> Any:
        return wire.encode(value, self.outgoing)

    def release(self, handle: int) -> None:
        self._released.append(handle)


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


class RemoteObject:
    """Something the candidate holds (see the module docstring)."""

    __slots__ = ("__weakref__", "_conn", "_handle", "_methods")
    _conn: Connection
    _handle: int
    _methods: dict[str, Any]

    def __init__(self, conn: Connection, handle: int) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_methods", {})

    def _ask(self, op: str, name: str = "", *args: Any, **kwargs: Any) -> Any:
        c = self._conn
        return c.request(
            op,
            target=self._handle,
            name=name,
            args=[c.encode(a) for a in args],
            kwargs=c.encode(kwargs),
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        cached = self._methods.get(name)
        if cached is not None:
            return cached
        got = self._ask("getattr", name)
        if got["callable"]:
            self._methods[name] = got["value"]
        return got["value"]

    def __setattr__(self, name: str, value: Any) -> None:
        self._methods.pop(name, None)
        self._ask("setattr", name, value)

    def __delattr__(self, name: str) -> None:
        self._methods.pop(name, None)
        self._ask("delattr", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", "", *args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._ask("getitem", "", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._ask("setitem", "", key, value)

    def __delitem__(self, key: Any) -> None:
        self._ask("delitem", "", key)

    def __len__(self) -> int:
        n = self._ask("len")
        if type(n) is not int or n < 0:
            raise TypeError("the candidate's __len__ did not answer a size")
        return n

    def __bool__(self) -> bool:
        return self._ask("bool") is True

    def __contains__(self, item: Any) -> bool:
        return self._ask("contains", "", item) is True

    def __iter__(self) -> RemoteIterator:
        return RemoteIterator(self._ask("iter"))

    def __enter__(self) -> Any:
        return self._ask("enter")

    def __exit__(self, *exc: object) -> None:
        self._ask("exit")

    def __repr__(self) -> str:
        return f"<candidate object #{self._handle}>"

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            self._conn.release(self._handle)


class RemoteIterator:
    def __init__(self, it: Any) -> None:
        self._it = it

    def __iter__(self) -> RemoteIterator:
        return self

    def __next__(self) -> Any:
        if not isinstance(self._it, RemoteObject):
            raise TypeError("the candidate's __iter__ did not answer an iterator")
        step = self._it._ask("next")
        if step["done"] is True:
            raise StopIteration
        return step["value"]


class RemoteModule(ModuleType):
    """A module of the implementation: its attributes are read from the candidate's side."""

    def __init__(self, name: str, conn: Connection, target: RemoteObject) -> None:
        super().__init__(name)
        self.__dict__["_candidate"] = target
        self.__dict__["_pid"] = os.getpid()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self.__dict__["_candidate"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__") and name.endswith("__"):
            super().__setattr__(name, value)
        else:
            setattr(self.__dict__["_candidate"], name, value)

    def __repr__(self) -> str:
        return f"<module {self.__name__!r} of the candidate>"
