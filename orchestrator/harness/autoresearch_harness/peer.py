"""One session between the trusted side and the candidate's worker; the same code on both.

Either side may ask the other while it waits for an answer: the candidate calls
a key function the trusted side passed it, which calls the candidate again, and
so on. A thread waiting for an answer reads the socket itself and serves the
requests that arrive meanwhile, so a nested call runs on the thread that made
the outer one, as it would in one process; answers meant for other threads are
handed over to them.

Objects that are not plain data cross by reference (`references.py`: counted
by the owner, released by the holder when its stand-in dies).

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
from typing import Any, Protocol

from . import values, wire
from .references import References
from .shared import Shared

STANDBY_S = 0.02
"""How long a serving loop may serve one request before the standby reads on (`Peer._standby`)."""


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


class Peer(References):
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
        self._events: dict[int | None, threading.Event] = {}  # of each wait, by the id it awaits
        self._parked: dict[int | None, threading.Event] = {}  # of the waits not reading now
        self._serving: dict[int, float] = {}  # serving loops busy with a request: since when
        self._replies: dict[int, dict[str, Any]] = {}
        self._inbox: dict[int, list[dict[str, Any]]] = {}
        self._waiting: set[int] = set()
        self._ids = itertools.count(1)
        self._local = threading.local()
        self.gone: str | None = None
        References.__init__(self)
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
        """Serve the other side's requests until it goes (the worker's main loop); a standby
        reader takes over when a request takes long (`_standby`)."""
        threading.Thread(target=self._standby, name="harness-standby", daemon=True).start()
        self._serve_loop()

    def _serve_loop(self, until_idle: bool = False) -> None:
        with contextlib.suppress(Gone):
            self._wait(None, self._local.__dict__.setdefault("waits", []), until_idle)

    def _standby(self) -> None:
        """Read on when a serving loop has served one request for `STANDBY_S` and no one reads:
        that call may wait for another thread of the trusted side's (an event it sets, a lock it
        releases), whose request only a reader takes in. The standby becomes a serving loop
        until no loop serves (or another reads), and a new standby takes its place."""
        while self.gone is None:
            time.sleep(STANDBY_S)
            now = time.monotonic()
            if self._read_lock.locked() or not any(
                now - since > STANDBY_S for since in list(self._serving.values())
            ):
                continue
            threading.Thread(target=self._standby, name="harness-standby", daemon=True).start()
            self._serve_loop(until_idle=True)
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

    def _wait(self, rid: int | None, mine: list[int], until_idle: bool = False) -> dict[str, Any]:
        """Read until `rid`'s answer comes, serving what is meant for this thread meanwhile.

        One thread reads at a time; it keeps answers and requests meant for another
        thread's wait in their boxes and wakes that thread alone (waking every waiter at
        every frame made fifty threads a convoy). A request belongs to the thread waiting
        on the request it is nested in (`on`), else to whoever reads; one that comes while
        this thread waits, from another thread of theirs, gets a thread here. A reader that
        stops reading (its answer came, or it serves) wakes one parked waiter to read on.
        `until_idle`: a standby's loop, which ends once no loop serves or another reads.
        """
        event = self._local.__dict__.get("event") or self._local.__dict__.setdefault(
            "event", threading.Event()
        )
        me = threading.get_ident()
        key = rid if rid is not None else -me  # a serving loop awaits no id
        self._events[key] = event
        serving = self._serving.pop(me, None) if rid is not None else None  # it reads for itself
        try:
            while True:
                event.clear()  # before looking: a wake from now on is not lost
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
                    if until_idle:
                        return {}
                    self._parked[key] = event  # another thread reads: it wakes us when it stops
                    if self._read_lock.locked():
                        event.wait(0.05)
                    self._parked.pop(key, None)
                    continue
                try:
                    if rid is not None and (rid in self._replies or self._inbox.get(rid)):
                        continue  # filed for us before we took the lock
                    frame = self._next_frame()
                    what = self._file(frame, rid, mine)  # under the lock: in order, no gap
                finally:
                    self._read_lock.release()
                if what == "reply":
                    return frame
                if what == "serve":
                    self._serve_here(frame, rid)
                if until_idle and not self._serving:
                    return {}
        finally:
            self._events.pop(key, None)
            if serving is not None:  # back to its own request: the standby's clock starts again
                self._serving[me] = time.monotonic()
            if self._parked and not self._read_lock.locked():
                self._hand_over()

    def _file(self, frame: dict[str, Any], rid: int | None, mine: list[int]) -> str:
        """Take `frame` in and say what it is to this thread: "reply" (its answer), "serve" (a
        request it serves), or "filed" (in its owner's box, or given a thread of its own)."""
        self.side.absorb(self, frame)
        self.shared.incoming(self, frame)
        if "re" in frame:
            if frame["re"] == rid:
                return "reply"
            self._replies[frame["re"]] = frame
            self._wake(self._events.get(frame["re"]))
            return "filed"
        on = frame.get("on")
        if on is not None and on not in mine and on in self._waiting:
            self._inbox.setdefault(on, []).append(frame)  # another thread's nested request
            self._wake(self._events.get(on))
            return "filed"
        if on is None and rid is not None:  # another thread of theirs: one of ours serves it
            threading.Thread(target=self._serve, args=(frame,), daemon=True).start()
            return "filed"
        return "serve"

    def _serve_here(self, frame: dict[str, Any], rid: int | None) -> None:
        """Serve `frame` on this thread, another reading meanwhile; a serving loop's request is
        timed for the standby (`_standby`)."""
        if self._parked:
            self._hand_over()
        if rid is not None:
            self._serve(frame)
            return
        me = threading.get_ident()
        self._serving[me] = time.monotonic()
        try:
            self._serve(frame)
        finally:
            self._serving.pop(me, None)

    def _hand_over(self) -> None:
        """Wake one parked waiter not woken already: this thread stops reading."""
        for event in list(self._parked.values()):
            if not event.is_set():
                event.set()
                return

    @staticmethod
    def _wake(event: threading.Event | None) -> None:
        if event is not None:
            event.set()

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
        if self.gone is None:
            self.gone = why
        for event in list(self._events.values()):
            event.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
