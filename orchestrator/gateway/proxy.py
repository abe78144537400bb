"""One request from the container, forwarded to the service's upstream — or refused.

The request is read whole (its length must be declared and fit the caps), checked
(`Tally.admit`), stripped of every header that could carry a credential or steer the
connection, given the service's headers from the host's environment, and sent to the
upstream; the answer streams back as it comes, counted, its usage read on the way.
Each answer closes its connection (HTTP/1.0 framing): one request per connection.
Nothing the container sent is ever logged.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from orchestrator.contract.services import Service
from orchestrator.gateway.tally import Refusal, Tally
from orchestrator.gateway.usage import UsageReader, request_model

DROPPED = frozenset(
    {
        "authorization", "proxy-authorization", "x-api-key", "cookie", "host", "content-length",
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "accept-encoding", "expect", "forwarded", "x-forwarded-for", "x-forwarded-host",
    }
)  # fmt: skip
"""Request headers never passed on: credentials, hop-by-hop, and what would steer the upstream.
Answers come back uncompressed (`accept-encoding: identity`), so their usage can be read."""
ANSWER_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
CHUNK = 64 * 1024


class Route:
    """What a handler needs: the service, its figures, the added headers, the open upstreams."""

    def __init__(
        self, service: Service, upstream: str, tally: Tally, added: dict[str, str], timeout_s: float
    ) -> None:
        self.service, self.tally, self.added, self.timeout_s = service, tally, added, timeout_s
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
        route, tally = self.route, self.route.tally
        length = self.headers.get("content-length")
        if length is None and self.headers.get("transfer-encoding"):
            return self._refuse(Refusal(411, "length_required", "declare content-length"))
        try:
            size = int(length or 0)
        except ValueError:
            return self._refuse(Refusal(400, "bad_request", "content-length is not a number"))
        cap = route.service.max_bytes
        if size < 0 or (cap is not None and size > cap):
            return self._refuse(
                Refusal(429, "gateway_cap_reached", f"a body of {size} bytes is over max_bytes")
            )
        body = self.rfile.read(size) if size else b""
        model = request_model(body) if route.service.counts_tokens else None
        refusal = tally.admit(self.command, self.path, len(body), model)
        if refusal is not None:
            return self._refuse(refusal)
        self._upstream(body, model)

    def _upstream(self, body: bytes, model: str | None) -> None:
        route, tally = self.route, self.route.tally
        headers = {k: v for k, v in self.headers.items() if k.lower() not in self._dropped()}
        headers.update(route.added)
        headers["accept-encoding"] = "identity"
        try:
            conn = route.connection()
        except OSError:
            tally.answered(502)
            return self._send_error(502, "upstream_unreachable", "the gateway is closing")
        try:
            try:
                conn.request(self.command, route.base + self.path, body=body, headers=headers)
                answer = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                tally.answered(502)
                return self._send_error(
                    502, "upstream_unreachable", f"upstream failed ({type(e).__name__})"
                )
            tally.answered(answer.status)
            self._relay(answer, model)
        finally:
            route.done(conn)

    def _relay(self, answer: http.client.HTTPResponse, model: str | None) -> None:
        tally = self.route.tally
        self.send_response_only(answer.status, answer.reason)
        for k, v in answer.getheaders():
            if k.lower() not in ANSWER_DROPPED:
                self.send_header(k, v)
        self.send_header("connection", "close")
        self.end_headers()
        reader = UsageReader(answer.getheader("content-type") or "")
        anthropic = self.route.service.counts_tokens
        try:
            while chunk := answer.read1(CHUNK):
                within = tally.received(len(chunk))
                if anthropic:
                    reader.feed(chunk)
                if not within:
                    break  # past max_bytes: the answer is cut here
                self.wfile.write(chunk)
                self.wfile.flush()
        except (OSError, http.client.HTTPException):
            pass  # the container or the upstream went away mid-answer; what came is counted
        finally:
            if anthropic:
                tally.used(reader.usage(), model)

    def _dropped(self) -> frozenset[str]:
        return DROPPED | frozenset(self.route.added)

    def _refuse(self, refusal: Refusal) -> None:
        self.route.tally.refuse(refusal.status)
        self._send_error(refusal.status, refusal.kind, refusal.message)

    def _send_error(self, status: int, kind: str, message: str) -> None:
        """A JSON error in the Messages API's shape; the SDKs do not retry it (x-should-retry)."""
        data = json.dumps(
            {"type": "error", "error": {"type": kind, "message": f"gateway: {message}"}}
        )
        raw = data.encode()
        self.send_response_only(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.send_header("x-should-retry", "false")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(raw)
