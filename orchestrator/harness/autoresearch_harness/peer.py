"""One session between the trusted side and the candidate's worker; the same code on both.

Either side may ask the other while it waits for an answer: the candidate calls
a key function the trusted side passed it, which calls the candidate again, and
so on. A thread waiting for an answer reads the socket itself and serves the
requests that arrive meanwhile, so a nested call runs on the thread that made
the outer one, as it would in one process; answers meant for other threads are
handed over to them.

Objects that are not plain data cross by reference. The owner keeps each one it
sends in a table and counts the sends; the other side holds one stand-in per
reference (the same object every time, so `is` works) and, when that stand-in
dies, releases it with the number of sends it received, so a reference sent
again meanwhile stays alive.

What each side may do with the other's objects, and how references are made
and resolved, is the side's own business (`Side`): the trusted side's in
`trusted.py` (its rules in `capabilities.py`), the candidate's in `candidate.py`.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from . import values, wire
from .shared import Shared


class Gone(Exception):
    """The other side closed the session, broke the wire or ran past the per-call limit."""


class Side(Protocol):
    """What one side adds to a session: its references and the requests it serves."""

    def refer(self, peer: Peer, value: Any) -> Any:
        """`value` (not plain data) as a reference tag, or a TypeError."""

    def resolve(self, peer: Peer, tag: str, body: Any) -> Any:
        """A reference tag the other side sent, as a value of this side."""

    def serve(self, peer: Peer, request: dict[str, Any]) -> Any:
        """The answer to the other side's request (raises what becomes an error reply)."""

    def error(self, peer: Peer, exc: BaseException) -> dict[str, Any]:
        """An exception raised while serving, as an error reply's body."""

    def failed(self, peer: Peer, error: Any) -> BaseException:
        """The exception to raise here for the other side's error reply."""

    def preamble(self, peer: Peer) -> dict[str, Any] | None:
        """What a message must carry besides its values (class descriptions...), or None."""

    def absorb(self, peer: Peer, frame: dict[str, Any]) -> None:
        """Take in what a message carries besides its values, before they are decoded."""


class Peer:
    """A session over one connected socket (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        side: Side,
        limit_s: float | None = None,
        shared: Shared | None = None,
        spin_s: float = 0.0,
    ) -> None:
        self.sock, self.side, self.limit_s = sock, side, limit_s
        self.shared = shared if shared is not None else Shared(origin=False)
        sock.settimeout(None)  # blocking: a timeout would cost system calls on every frame
        self._reader = wire.Reader(sock, spin_s)  # spin_s: how long a read polls (wire.Reader)
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._inbox: dict[int, list[dict[str, Any]]] = {}
        self._waiting: set[int] = set()
        self._ids = itertools.count(1)
        self._local = threading.local()
        self.gone: str | None = None
        # what this side sent by reference
        self._table_lock = threading.RLock()
        self._objects: dict[int, Any] = {}
        self._index: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        self._pinned: set[int] = set()
        self._hids = itertools.count(1)
        # what the other side sent by reference
        self._stand_ins: dict[int, weakref.ref[Any]] = {}
        self._received: dict[int, int] = {}
        self._kept: dict[int, Any] = {}
        self._releases: list[list[int]] = []
        self._deadlines: dict[int, float] = {}
        if limit_s is not None:
            threading.Thread(target=self._watch, name="harness-deadline", daemon=True).start()

    # -- values ----------------------------------------------------------
    def encode(self, value: Any) -> Any:
        return values.encode(value, self._refer, shared=self._shared if self.shared.live else None)

    def _shared(self, value: Any) -> Any:
        return self.shared.tag(self, value)

    def encode_args(self, args: Any, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """A call's arguments: a list, dict, set or bytearray among them is shared (`shared.py`)."""
        out: dict[str, Any] = {"args": [self.shared.share(self, a) for a in args]}
        if kwargs is not None:
            out["kwargs"] = {
                "$d": [[self.encode(k), self.shared.share(self, v)] for k, v in kwargs.items()]
            }
        return out

    def decode(self, data: Any, text: type[str] = str) -> Any:
        return values.decode(data, self._resolve, text)

    def _refer(self, value: Any) -> Any:
        return self.side.refer(self, value)

    def _resolve(self, tag: str, body: Any) -> Any:
        if tag == "$sh":
            return self.shared.resolve(self, body)
        return self.side.resolve(self, tag, body)

    # -- what this side sends by reference -------------------------------
    def export(self, obj: Any, pin: bool = False) -> int:
        """The reference id of `obj` (kept here until the other side releases every send)."""
        with self._table_lock:
            hid = self._index.get(id(obj))
            if hid is None or self._objects.get(hid) is not obj:
                hid = next(self._hids)
                self._objects[hid], self._index[id(obj)] = obj, hid
            self._counts[hid] = self._counts.get(hid, 0) + 1
            if pin:
                self._pinned.add(hid)
            return hid

    def exported(self, hid: Any) -> Any:
        """What this side sent as `hid` (a WireError for an id it never sent or that was released)."""
        with self._table_lock:
            if type(hid) is not int or hid not in self._objects:
                raise wire.WireError("a reference this side does not hold")
            return self._objects[hid]

    def replace(self, hid: int, obj: Any) -> None:
        """Let `hid` stand for `obj` from now on (both sides keep using the same id)."""
        with self._table_lock:
            old = self._objects.get(hid)
            if old is not None and self._index.get(id(old)) == hid:
                del self._index[id(old)]
            self._objects[hid], self._index[id(obj)] = obj, hid

    def table(self) -> Any:
        """The table of what this side sent (to tell it apart from other holders of an object)."""
        return self._objects

    def known(self, obj: Any) -> int | None:
        with self._table_lock:
            hid = self._index.get(id(obj))
            return hid if hid is not None and self._objects.get(hid) is obj else None

    def _release(self, pairs: Any) -> None:
        if not isinstance(pairs, list):
            return
        with self._table_lock:
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2):
                    continue
                hid, n = pair
                if hid in self._pinned or type(n) is not int:
                    continue
                left = self._counts.get(hid, 0) - n
                if left > 0:
                    self._counts[hid] = left
                elif hid in self._objects:
                    obj = self._objects.pop(hid)
                    self._counts.pop(hid, None)
                    if self._index.get(id(obj)) == hid:
                        del self._index[id(obj)]

    # -- what the other side sent by reference ---------------------------
    def stand_in(self, hid: int, make: Callable[[], Any], keep: bool = False) -> Any:
        """The one stand-in for the other side's `hid` (made by `make` the first time)."""
        ref = self._stand_ins.get(hid)
        obj = ref() if ref is not None else None
        if obj is None:
            obj = make()
            if keep:
                self._kept[hid] = obj
            self._stand_ins[hid] = weakref.ref(obj, self._dropped(hid))
            self._received[hid] = 0
        self._received[hid] = self._received.get(hid, 0) + 1
        return obj

    def holds_any(self) -> bool:
        """Whether this side holds any live stand-in of the other side's objects (besides kept ones)."""
        return any(
            ref() is not None for hid, ref in list(self._stand_ins.items()) if hid not in self._kept
        )

    def held(self, hid: int) -> Any:
        ref = self._stand_ins.get(hid)
        return ref() if ref is not None else None

    def _dropped(self, hid: int) -> Callable[[Any], None]:
        def release(_: Any) -> None:
            if self._stand_ins.get(hid) is not None and self._stand_ins[hid]() is None:
                del self._stand_ins[hid]
            n = self._received.pop(hid, 0)
            if n:
                self._releases.append([hid, n])

        return release

    # -- requests --------------------------------------------------------
    def request(self, op: str, text: type[str] = str, **fields: Any) -> Any:
        """Ask the other side; its answer decoded (strings as `text`), or its error raised here
        (Gone if it is gone, or when no answer came within the per-call limit)."""
        __tracebackhide__ = True
        rid = next(self._ids)
        local = self._local.__dict__
        waits: list[int] = local.setdefault("waits", [])
        outer = not waits
        me = threading.get_ident()
        if outer and self.limit_s is not None:
            self._deadlines[me] = time.monotonic() + self.limit_s
        waits.append(rid)
        self._waiting.add(rid)
        try:
            message = {"id": rid, "op": op, **fields}
            serving = local.get("serving")
            if serving:
                message["on"] = serving[-1]
            self._send(message)
            reply = self._wait(rid, waits)
        finally:
            waits.pop()
            self._waiting.discard(rid)
            self._inbox.pop(rid, None)
            if outer:
                self._deadlines.pop(me, None)
        try:
            if "error" in reply:
                raise self.side.failed(self, reply["error"])
            return self.decode(reply.get("ok"), text)
        finally:  # only now: the answer may name what the other side released with it
            self._release(reply.get("release"))

    def serve_forever(self) -> None:
        """Serve the other side's requests until it goes (the worker's main loop)."""
        try:
            self._wait(None, self._local.__dict__.setdefault("waits", []))
        except Gone:
            return

    def _send(self, message: dict[str, Any]) -> None:
        if self.gone is not None:
            raise Gone(self.gone)
        if self._releases:
            with self._table_lock:
                message["release"], self._releases = self._releases, []
        if self.shared.live:  # before the preamble: the contents may name new classes
            message.update(self.shared.outgoing(self))
        preamble = self.side.preamble(self)
        if preamble:
            message.update(preamble)
        data = wire.dumps(message)
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError as e:
                self._lose(f"the wire broke ({type(e).__name__})")
                raise Gone(self.gone) from None

    def _wait(self, rid: int | None, mine: list[int]) -> dict[str, Any]:
        """Read until `rid`'s answer comes, serving what is meant for this thread meanwhile.

        One thread reads at a time; it keeps answers and requests meant for another
        thread's wait in their boxes and wakes it. A request belongs to the thread
        waiting on the request it is nested in (`on`), else to whoever reads; one that
        comes while this thread waits, from another thread of theirs, gets a thread here.
        """
        while True:
            if rid is not None:
                reply = self._replies.pop(rid, None)
                if reply is not None:
                    return reply
                box = self._inbox.get(rid)
                if box:
                    self._serve(box.pop(0))
                    continue
            if self.gone is not None:
                raise Gone(self.gone)
            if not self._read_lock.acquire(blocking=False):
                with self._cond:  # another thread reads: it wakes us when something is ours
                    if rid is None or (rid not in self._replies and not self._inbox.get(rid)):
                        self._cond.wait(0.05)
                continue
            try:
                frame = self._next_frame()
            finally:
                self._read_lock.release()
            if len(self._waiting) > 1:
                with self._cond:  # let a waiting thread take over the reading
                    self._cond.notify_all()
            self.side.absorb(self, frame)
            self.shared.incoming(self, frame)
            if "re" in frame:
                if frame["re"] == rid:
                    return frame
                with self._cond:
                    self._replies[frame["re"]] = frame
                    self._cond.notify_all()
                continue
            on = frame.get("on")
            if on is not None and on not in mine and on in self._waiting:
                with self._cond:  # another thread's nested request
                    self._inbox.setdefault(on, []).append(frame)
                    self._cond.notify_all()
                continue
            if on is None and rid is not None:  # another thread of theirs: one of ours serves it
                threading.Thread(target=self._serve, args=(frame,), daemon=True).start()
                continue
            self._serve(frame)

    def _next_frame(self) -> dict[str, Any]:
        try:
            frame = self._reader.frame()
        except (OSError, wire.WireError) as e:
            self._lose(f"the wire broke ({type(e).__name__}: {e})")
            raise Gone(self.gone) from None
        if frame is None:
            self._lose(self.gone or "the other side ended the session (it exited or was killed)")
            raise Gone(self.gone)
        return frame

    def _watch(self) -> None:
        """The per-call limit: a call whose answer is late ends the session (its reads see EOF)."""
        assert self.limit_s is not None
        tick = max(0.05, min(0.5, self.limit_s / 8))
        while self.gone is None:
            time.sleep(tick)
            now = time.monotonic()
            if any(deadline < now for deadline in list(self._deadlines.values())):
                self._lose(f"no answer within the per-call limit of {self.limit_s:g} s")

    def _serve(self, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"re": request.get("id")}
        serving: list[Any] = self._local.__dict__.setdefault("serving", [])
        serving.append(request.get("id"))
        try:
            reply["ok"] = self.shared.share(self, self.side.serve(self, request))
        except Gone:
            raise
        except BaseException as e:  # the other side's request failed: that is its answer
            reply["error"] = self.side.error(self, e)
        finally:
            serving.pop()
            self._release(request.get("release"))
        try:
            self._send(reply)
        except (wire.WireError, TypeError, ValueError) as e:
            self._send({"re": request.get("id"), "error": self.side.error(self, e)})

    def _lose(self, why: str) -> None:
        with self._cond:
            if self.gone is None:
                self.gone = why
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
