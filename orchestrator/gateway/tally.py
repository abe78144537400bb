"""One service's figures over one run, and the caps they are held to (thread-safe).

A request is admitted (or refused, with why) before anything reaches the upstream:
its method and path against the contract's, then every cap. Admission reserves the
request and its body bytes at once, so with N allowed the (N+1)-th is refused even
when they arrive together. Tokens and USD are known only once an answer is read: the
request that reaches a token or USD cap completes, the next one is refused.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from orchestrator.contract.services import Service

_DOT_OR_SLASH = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


@dataclass(frozen=True)
class Refusal:
    status: int
    kind: str
    message: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    """Input tokens, cache writes and reads included."""
    output_tokens: int = 0
    cache_write: int = 0
    cache_read: int = 0
    model: str | None = None


def allowed_path(target: str, prefixes: list[str]) -> bool:
    """A plain absolute path under one of `prefixes`: no dot segment, no encoded slash or dot."""
    path = target.split("?", 1)[0]
    if not path.startswith("/") or "//" in path or "\\" in path or _DOT_OR_SLASH.search(path):
        return False
    if any(seg in (".", "..") for seg in path.split("/")):
        return False
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


@dataclass
class Tally:
    service: Service
    requests: int = 0
    """Forwarded to the upstream (whatever it answered)."""
    refused: int = 0
    errors: int = 0
    """Upstream answers that were not 2xx, or no answer at all."""
    statuses: dict[int, int] = field(default_factory=dict)
    """Every status the container got, the gateway's own refusals included."""
    bytes_sent: int = 0
    bytes_received: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, method: str, target: str, body_bytes: int, model: str | None) -> Refusal | None:
        """None when the request may go upstream (it is then counted), else why not (`refuse` it)."""
        with self._lock:
            why = self._why_not(method, target, body_bytes, model)
            if why is not None:
                return why
            self.requests += 1
            self.bytes_sent += body_bytes
            return None

    def _why_not(self, method: str, target: str, body: int, model: str | None) -> Refusal | None:
        s, name = self.service, self.service.name
        if method not in s.methods:
            return Refusal(
                405,
                "method_not_allowed",
                f"service {name!r} allows {', '.join(s.methods)}, not {method}",
            )
        if not allowed_path(target, s.paths):
            return Refusal(
                403,
                "path_not_allowed",
                f"service {name!r} allows only paths under {', '.join(s.paths)}",
            )
        if s.max_requests is not None and self.requests >= s.max_requests:
            return _cap(name, f"max_requests = {s.max_requests}")
        if s.max_bytes is not None and self.bytes_sent + self.bytes_received + body > s.max_bytes:
            return _cap(name, f"max_bytes = {s.max_bytes}")
        if s.max_tokens is not None and self.input_tokens + self.output_tokens >= s.max_tokens:
            return _cap(name, f"max_tokens = {s.max_tokens}")
        if s.max_usd is not None:
            if self.usd >= s.max_usd:
                return _cap(name, f"max_usd = {s.max_usd:g}")
            if model is None or model not in s.prices:
                return Refusal(
                    403,
                    "model_not_priced",
                    f"service {name!r} has max_usd but no price for model {model!r}",
                )
        return None

    def refuse(self, status: int) -> None:
        """A request the gateway answered itself, with `status`."""
        with self._lock:
            self.refused += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def received(self, n: int) -> bool:
        """Count `n` more response bytes; False once past max_bytes (the answer is cut there)."""
        with self._lock:
            self.bytes_received += n
            cap = self.service.max_bytes
            return cap is None or self.bytes_sent + self.bytes_received <= cap

    def answered(self, status: int) -> None:
        with self._lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not 200 <= status < 300:
                self.errors += 1

    def used(self, usage: Usage, request_model: str | None) -> None:
        price = self.service.prices.get(usage.model or request_model or "")
        with self._lock:
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            if price is not None:
                fresh = usage.input_tokens - usage.cache_write - usage.cache_read
                self.usd += (
                    fresh * price.input
                    + usage.cache_write * price.cache_write
                    + usage.cache_read * price.cache_read
                    + usage.output_tokens * price.output
                ) / 1e6

    def metrics(self) -> dict[str, float]:
        """`gateway.<name>.<figure>`: the trusted metrics of this service over the run."""
        with self._lock:
            figures: dict[str, float] = {
                "requests": self.requests,
                "refused": self.refused,
                "errors": self.errors,
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "bytes": self.bytes_sent + self.bytes_received,
            }
            if self.service.counts_tokens:
                figures.update(
                    input_tokens=self.input_tokens,
                    output_tokens=self.output_tokens,
                    tokens=self.input_tokens + self.output_tokens,
                    usd=self.usd,
                )
            figures.update({f"status.{code}": n for code, n in sorted(self.statuses.items())})
        return {f"gateway.{self.service.name}.{k}": float(v) for k, v in figures.items()}


def _cap(name: str, cap: str) -> Refusal:
    return Refusal(
        429, "gateway_cap_reached", f"service {name!r} reached {cap} for this experiment"
    )
