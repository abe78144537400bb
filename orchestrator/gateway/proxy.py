"""One request from the container, forwarded to the service's upstream — or refused.

Its line and headers are checked before any of its body is read (`Tally.check`,
headers.py): its method, its exact path, its declared length (which must fit the caps
and be reserved in the run's byte budget, limits.py). The body is then read, checked
again (`Tally.admit`: its model's price, a batch's bounds, every cap) and sent upstream
with the headers headers.py lets through and the service's own from the host's
environment. The answer streams back as it comes, counted, its usage read on the way,
every value the gateway added cut out of it. Each answer closes its connection
(HTTP/1.0 framing): one request per connection. Nothing the container sent is logged.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from orchestrator.contract.services import Service
from orchestrator.gateway.endpoints import Ask, Refusal, ask
from orchestrator.gateway.headers import Redactor, answer_headers, request_headers
from orchestrator.gateway.limits import Limits
from orchestrator.gateway.openai import reader_for
from orchestrator.gateway.tally import Tally

CHUNK = 64 * 1024
DRAIN = 1024**2
"""Most bytes of an unread body discarded after a refusal (closing a unix socket with data
unread resets its peer, which may lose the answer); a larger one is cut."""
DRAIN_S = 2.0
_LENGTH = re.compile(r"^[0-9]{1,15}$")
Sent = tuple[http.client.HTTPConnection, http.client.HTTPResponse, Ask]


class Route:
    """What a handler needs: the service, its figures, the added headers, the open upstreams."""

    def __init__(
        self,
        service: Service,
        upstream: str,
        tally: Tally,
        added: dict[str, str],
        timeout_s: float,
        limits: Limits,
    ) -> None:
        self.service, self.tally, self.added, self.timeout_s = service, tally, added, timeout_s
        self.limits = limits
        u = urlsplit(upstream)
        self.https, self.host, self.port = u.scheme == "https", u.hostname or "", u.port
        self.base = u.path.rstrip("/")
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self.closed = False

    def connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout_s)
        with self._lock:
            if self.closed:
                raise OSError("the gateway is closing")
            self._open.add(conn)
        return conn

    def done(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def close(self) -> None:
        """Cut every upstream still streaming: the container that asked is gone."""
        with self._lock:
            self.closed = True
            conns = list(self._open)
        for conn in conns:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    route: Route  # set on the subclass each server makes
    _unread = 0
    """Body bytes the container declared and the gateway has not read."""
    protocol_version = "HTTP/1.0"
    server_version = "autoresearch-gateway"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Never: the request line is the container's text."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method reaches `forward`; the service decides
            return self.forward
        raise AttributeError(name)

    def forward(self) -> None:
        route = self.route
        headers, size = request_headers(self.headers, route.added), self._length()
        self._unread = size if isinstance(size, int) else 0
        if isinstance(headers, Refusal):
            return self._refuse(headers)
        if isinstance(size, Refusal):
            return self._refuse(size)
        refusal = route.tally.check(self.command, self.path, size)
        if refusal is not None:
            return self._refuse(refusal)
        sent = self._held(size, headers)
        if sent is not None:
            conn, answer, asked = sent
            try:
                self._relay(answer, asked)
            finally:
                route.done(conn)

    def _length(self) -> int | Refusal:
        length = (self.headers.get("content-length") or "0").strip()
        if not _LENGTH.match(length):
            return Refusal(400, "invalid_request_error", "content-length is not a number")
        return int(length)

    def _held(self, size: int, headers: dict[str, str]) -> Sent | None:
        """Read, admit and send the body with `size` bytes reserved in the run's budget."""
        budget = self.route.limits.budget
        if size > budget.total:
            why = f"a body of {size} bytes is over the {budget.total} a run's gateway holds at once"
            self._refuse(Refusal(413, "request_too_large", why))
            return None
        if not budget.take(size, self.route.timeout_s):
            self._refuse(Refusal(503, "overloaded_error", "no room for the body in time"))
            return None
        try:
            return self._send(size, headers)
        finally:
            budget.give(size)

    def _send(self, size: int, headers: dict[str, str]) -> Sent | None:
        body = self.rfile.read(size) if size else b""
        self._unread = 0
        if len(body) < size:
            self._refuse(
                Refusal(400, "invalid_request_error", "the body ended before its content-length")
            )
            return None
        asked = ask(self.route.service, self.command, self.path, body)
        if isinstance(asked, Refusal):
            self._refuse(asked)
            return None
        refusal = self.route.tally.admit(asked, size)
        if refusal is not None:
            self._refuse(refusal)
            return None
        return self._upstream(body, headers, asked)

    def _upstream(self, body: bytes, headers: dict[str, str], asked: Ask) -> Sent | None:
        route = self.route
        try:
            conn = route.connection()
        except OSError:
            return self._failed(None, "upstream_unreachable", "the gateway is closing")
        try:
            conn.request(self.command, route.base + self.path, body=body, headers=headers)
            answer = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            return self._failed(
                conn, "upstream_unreachable", f"upstream failed ({type(e).__name__})"
            )
        encoding = (answer.getheader("content-encoding") or "identity").strip().lower()
        if encoding != "identity":  # its keys and usage could not be read: it never goes back
            return self._failed(
                conn, "upstream_unreadable", f"upstream answered {encoding}, not identity"
            )
        route.tally.answered(answer.status)
        return conn, answer, asked

    def _failed(
        self, conn: http.client.HTTPConnection | None, kind: str, message: str
    ) -> Sent | None:
        """The upstream gave no answer that may go back: a 502 of the gateway's own; None."""
        if conn is not None:
            self.route.done(conn)
        self.route.tally.answered(502)
        self._send_error(502, kind, message)
        return None

    def _relay(self, answer: http.client.HTTPResponse, asked: Ask) -> None:
        tally, redactor = self.route.tally, Redactor(self.route.added.values())
        self.send_response_only(answer.status, redactor.text(answer.reason))
        for k, v in answer_headers(answer.getheaders()):
            if redactor.text(k) == k:  # a header named after a key is dropped whole
                self.send_header(k, redactor.text(v))
        self.send_header("connection", "close")
        self.end_headers()
        counted = self.route.service.counts_tokens and asked.billed and not asked.batch
        reader = reader_for(self.route.service, answer.getheader("content-type") or "")
        try:
            while chunk := answer.read1(CHUNK):
                within = tally.received(len(chunk))
                if counted:
                    reader.feed(chunk)
                if not within:
                    break  # past max_bytes: the answer is cut here
                self.wfile.write(redactor.feed(chunk))
                self.wfile.flush()
            self.wfile.write(redactor.end())
        except (OSError, http.client.HTTPException):
            pass  # the container or the upstream went away mid-answer; what came is counted
        finally:
            if counted:
                tally.used(reader.usage(), asked.model)

    def _refuse(self, refusal: Refusal) -> None:
        self.route.tally.refuse(refusal.status)
        self._send_error(refusal.status, refusal.kind, refusal.message)
        self._drain()

    def _drain(self) -> None:
        """Discard what is left of the body (a bounded amount, briefly) once the answer is out."""
        left, self._unread = min(self._unread, DRAIN), 0
        with contextlib.suppress(OSError, ValueError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(DRAIN_S)
            while left > 0 and (chunk := self.rfile.read1(min(left, CHUNK))):
                left -= len(chunk)

    def _send_error(self, status: int, kind: str, message: str) -> None:
        """A JSON error in the Messages API's shape; the SDKs do not retry it (x-should-retry)."""
        data = json.dumps(
            {"type": "error", "error": {"type": kind, "message": f"gateway: {message}"}}
        )
        raw = data.encode()
        with contextlib.suppress(OSError):
            self.send_response_only(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.send_header("x-should-retry", "false")
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(raw)
