"""The contract's services inside the sandbox: a loopback port per service, piped to its socket.

The host's gateway serves each service on a unix socket in `/services` (mounted
read-only); the container has no network but its own loopback. `start()` (called
by boot.py, before the evaluator runs) binds one loopback port per service — taken
before any candidate code can run, so nothing else can answer there — and forks
one process that pipes every connection to the service's socket, byte for byte (it
parses nothing: the gateway on the host checks everything). The evaluator reads the
URL from `AUTORESEARCH_SERVICE_<NAME>_URL`. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import time

BUFFER = 1024 * 1024
"""Most bytes held for one direction of one connection before reading from it pauses."""


def url_variable(name: str) -> str:
    return f"AUTORESEARCH_SERVICE_{name.upper()}_URL"


def start(environ: dict[str, str]) -> dict[str, str]:
    """Bind the services named in AUTORESEARCH_SERVICES, fork the forwarder; the URL variables."""
    names = [n for n in environ.get("AUTORESEARCH_SERVICES", "").split(",") if n]
    folder = environ.get("AUTORESEARCH_SERVICES_DIR", "/services")
    listeners: dict[socket.socket, str] = {}
    urls: dict[str, str] = {}
    for name in names:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        listeners[lsock] = os.path.join(folder, name)
        urls[url_variable(name)] = f"http://127.0.0.1:{lsock.getsockname()[1]}"
    if not listeners:
        return {}
    if os.fork() == 0:  # the forwarder: silent, it never writes the evaluator's output
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            serve(listeners)
        finally:
            os._exit(0)
    for lsock in listeners:
        lsock.close()
    return urls


def serve(listeners: dict[socket.socket, str]) -> None:
    """Accept on every listener; pipe each connection to its socket until both sides are done."""
    sel = selectors.DefaultSelector()
    for lsock, path in listeners.items():
        lsock.setblocking(False)
        sel.register(lsock, selectors.EVENT_READ, path)
    while True:
        for key, _mask in sel.select():
            if isinstance(key.data, str):
                _accept(sel, key.fileobj, key.data)  # type: ignore[arg-type]
            else:
                key.data.step(key.fileobj)


def _accept(sel: selectors.BaseSelector, lsock: socket.socket, path: str) -> None:
    try:
        client, _ = lsock.accept()
    except OSError:
        return
    try:
        upstream = _connect(path)
    except OSError as e:
        _unreachable(client, path, e)
        return
    _Pipe(sel, client, upstream)


def _connect(path: str, wait_s: float = 5.0) -> socket.socket:
    """A connection to the unix socket at `path`; a full backlog (EAGAIN) is waited out."""
    deadline = time.monotonic() + wait_s
    while True:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.settimeout(wait_s)
            upstream.connect(path)
            return upstream
        except BlockingIOError:
            upstream.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
        except OSError:
            upstream.close()
            raise


def _unreachable(client: socket.socket, path: str, e: OSError) -> None:
    """An HTTP 502 the evaluator can read: why the service's socket cannot be reached."""
    why = errno.errorcode.get(e.errno or 0, type(e).__name__)
    hint = (
        " — under runsc the engine must register it with --host-uds=open (scripts/ensure-runsc)"
        if e.errno in (errno.EPERM, errno.EACCES)
        else ""
    )
    body = json.dumps(
        {"type": "error", "error": {"type": "service_unreachable",
                                    "message": f"harness: {path} cannot be reached ({why}){hint}"}}
    ).encode()  # fmt: skip
    head = f"HTTP/1.0 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nx-should-retry: false\r\n\r\n"
    try:
        client.settimeout(2)
        client.sendall(head.encode() + body)
    except OSError:
        pass
    client.close()


class _Pipe:
    """Two sockets and what each still has to receive; half-closes passed on."""

    def __init__(self, sel: selectors.BaseSelector, a: socket.socket, b: socket.socket) -> None:
        self.sel = sel
        self.peer = {a: b, b: a}
        self.pending = {a: bytearray(), b: bytearray()}
        self.ended: set[socket.socket] = set()
        self.shut: set[socket.socket] = set()
        self.watched = {a, b}
        for s in (a, b):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, self)

    def step(self, s: socket.socket) -> None:
        try:
            self._read(s)
            self._write(s)
            self._write(self.peer[s])
        except OSError:
            self._close()
            return
        if len(self.ended) == 2 and not any(self.pending.values()):
            self._close()
        else:
            self._interest()

    def _read(self, s: socket.socket) -> None:
        if s in self.ended or len(self.pending[self.peer[s]]) >= BUFFER:
            return
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        if data:
            self.pending[self.peer[s]] += data
            return
        self.ended.add(s)

    def _write(self, s: socket.socket) -> None:
        out = self.pending[s]
        if out:
            try:
                sent = s.send(out)
            except BlockingIOError:
                sent = 0
            del out[:sent]
        if not out and self.peer[s] in self.ended and s not in self.shut:
            self.shut.add(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_WR)

    def _interest(self) -> None:
        for s in self.peer:
            want = 0
            if s not in self.ended and len(self.pending[self.peer[s]]) < BUFFER:
                want |= selectors.EVENT_READ
            if self.pending[s]:
                want |= selectors.EVENT_WRITE
            if want and s in self.watched:
                self.sel.modify(s, want, self)
            elif want:
                self.sel.register(s, want, self)
                self.watched.add(s)
            elif s in self.watched:
                self.sel.unregister(s)
                self.watched.discard(s)

    def _close(self) -> None:
        for s in self.peer:
            if s in self.watched:
                self.sel.unregister(s)
            s.close()
        self.watched.clear()
