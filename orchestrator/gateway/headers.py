"""The headers a request takes upstream, those an answer brings back, and the keys kept out of both.

A request's headers are the container's text: a malformed or folded line is refused
(an upstream could read it as another header), and every header that carries a
credential, frames the connection (hop-by-hop, and whatever `Connection` names) or
could steer the upstream or a proxy in front of it (the method, the URL, the client's
address) is dropped; the service's own headers are then added from the host's
environment. An answer is the upstream's text, yet it may echo what it was sent: every
value the gateway added is cut out of its status line, headers and body, as it streams.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import Message

from orchestrator.gateway.endpoints import Refusal

CREDENTIALS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie"})
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
     "proxy-connection", "proxy-authenticate", "proxy-authorization"}
)  # fmt: skip
STEERING = frozenset(
    {"host", "forwarded", "via", "x-real-ip", "x-client-ip", "true-client-ip", "x-host",
     "x-http-method", "x-http-method-override", "x-method-override", "x-original-method",
     "x-original-url", "x-original-uri", "x-rewrite-url", "content-length", "expect",
     "accept-encoding", "content-encoding"}
)  # fmt: skip
"""What would steer the upstream (or a proxy in front of it): target, method, client, framing.
Answers come back uncompressed (`accept-encoding: identity`): their usage and keys are read."""
STEERING_PREFIXES = ("x-forwarded-", "proxy-", "x-original-", "x-rewrite-")
STEERING_SUFFIXES = ("-method-override",)
ANSWER_DROPPED = HOP_BY_HOP | {"content-length"}
_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters but tab: a folded line (CR LF and a blank) among them."""
REDACTED = b"[redacted by the gateway]"
SHORTEST_SECRET = 8
"""Added values (and their words) shorter than this are not secrets (a version, a flag): kept."""


def request_headers(headers: Message, added: dict[str, str]) -> dict[str, str] | Refusal:
    """The container's headers as they go upstream (the service's `added` last), or a refusal."""
    if headers.defects or not all(_plain(k, v) for k, v in headers.items()):
        return Refusal(
            400, "invalid_request_error", "a malformed, folded or control-character header"
        )
    if len(headers.get_all("content-length") or []) > 1:
        return Refusal(400, "invalid_request_error", "content-length sent twice")
    if headers.get("transfer-encoding") is not None:
        return Refusal(411, "length_required", "send content-length, not transfer-encoding")
    named = _connection_names(headers)
    out = {k: v for k, v in headers.items() if not _dropped(k.lower(), named, added)}
    out.update(added)
    out["accept-encoding"] = "identity"
    return out


def answer_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """An answer's headers as they go back: no hop-by-hop ones, none malformed."""
    named = {
        n.strip().lower() for k, v in headers if k.lower() == "connection" for n in v.split(",")
    }
    return [
        (k, v)
        for k, v in headers
        if _plain(k, v) and k.lower() not in ANSWER_DROPPED and k.lower() not in named
    ]


def _plain(name: str, value: str) -> bool:
    return bool(_NAME.match(name)) and not _CONTROL.search(value)


def _connection_names(headers: Message) -> frozenset[str]:
    return frozenset(
        n.strip().lower() for v in headers.get_all("connection") or [] for n in v.split(",")
    )


def _dropped(name: str, named: frozenset[str], added: dict[str, str]) -> bool:
    return (
        name in CREDENTIALS
        or name in HOP_BY_HOP
        or name in STEERING
        or name in named
        or name in added
        or name.startswith(STEERING_PREFIXES)
        or name.endswith(STEERING_SUFFIXES)
    )


class Redactor:
    """Cuts the added values out of an answer: `text()` for its status line and headers, `feed()`
    and `end()` for its body as it streams (a value split across chunks is held back, no more)."""

    def __init__(self, values: Iterable[str]) -> None:
        found = {
            v for value in values for v in (value, *value.split()) if len(v) >= SHORTEST_SECRET
        }
        self.secrets = sorted((s.encode() for s in found), key=len, reverse=True)
        self._held = b""

    def text(self, value: str) -> str:
        raw = value.encode("latin-1", "replace")
        return self._cut(raw).decode("latin-1")

    def feed(self, chunk: bytes) -> bytes:
        """What of the body may go back now (a tail that may start a secret is held)."""
        data = self._cut(self._held + chunk)
        keep = self._prefix_tail(data)
        self._held = data[len(data) - keep :]
        return data[: len(data) - keep]

    def end(self) -> bytes:
        """The body's last bytes (held, they start no whole secret)."""
        held, self._held = self._held, b""
        return held

    def _cut(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret, REDACTED)
        return data

    def _prefix_tail(self, data: bytes) -> int:
        """The longest tail of `data` that is the start of a secret."""
        for n in range(min(len(data), max((len(s) for s in self.secrets), default=1) - 1), 0, -1):
            tail = data[-n:]
            if any(s.startswith(tail) for s in self.secrets):
                return n
        return 0
