"""One service's figures over one run, and the caps they are held to (thread-safe).

A request is admitted (or refused, with why) before anything reaches the upstream:
its method and exact path against the contract's and the caps it can be held to before
its body is read (`check`), then, body read, every cap (`admit`). Admission reserves the
request and its body bytes at once, so with N allowed the (N+1)-th is refused even when
they arrive together. A Messages request's tokens and USD are known only once its answer
is read: the request that reaches a token or USD cap completes, the next one is refused.
A batch's are charged when it is created (endpoints.py), so it cannot pass a cap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from orchestrator.contract.services import Service
from orchestrator.gateway.endpoints import Ask, Refusal, allowed
from orchestrator.gateway.usage import Usage


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
    """From each answer's usage, and every batch's bound when it was created."""
    output_tokens: int = 0
    usd: float = 0.0
    batched: int = 0
    """Messages requests sent in batches (each also counts in `requests`)."""
    unpriced: int = 0
    """Answers whose model had no price (no `max_usd`): their tokens counted, no USD."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, method: str, target: str, body_bytes: int) -> Refusal | None:
        """Why a request with a body of `body_bytes` cannot pass, before its body is read."""
        s, name = self.service, self.service.name
        if method not in s.methods:
            return Refusal(
                405,
                "method_not_allowed",
                f"service {name!r} allows {', '.join(s.methods)}, not {method}",
            )
        if not allowed(s, target):
            return Refusal(
                403,
                "path_not_allowed",
                f"service {name!r} allows only the paths {', '.join(s.paths)}",
            )
        with self._lock:
            return self._over(Ask(), body_bytes)

    def admit(self, ask: Ask, body_bytes: int) -> Refusal | None:
        """None when the request may go upstream (it is then counted), else why not (`refuse` it)."""
        with self._lock:
            why = self._over(ask, body_bytes) or self._unpriced(ask)
            if why is not None:
                return why
            self.requests += ask.requests
            self.batched += ask.requests if ask.batch else 0
            self.bytes_sent += body_bytes
            self.input_tokens += ask.input_tokens
            self.output_tokens += ask.output_tokens
            self.usd += ask.usd
            return None

    def _over(self, ask: Ask, body: int) -> Refusal | None:
        s, name = self.service, self.service.name
        if s.max_requests is not None and self.requests + ask.requests > s.max_requests:
            return _cap(name, f"max_requests = {s.max_requests}")
        if s.max_bytes is not None and self.bytes_sent + self.bytes_received + body > s.max_bytes:
            return _cap(name, f"max_bytes = {s.max_bytes}")
        tokens = self.input_tokens + self.output_tokens
        more = ask.input_tokens + ask.output_tokens
        if s.max_tokens is not None and (tokens >= s.max_tokens or tokens + more > s.max_tokens):
            return _cap(name, f"max_tokens = {s.max_tokens}")
        if s.max_usd is not None and (self.usd >= s.max_usd or self.usd + ask.usd > s.max_usd):
            return _cap(name, f"max_usd = {s.max_usd:g}")
        return None

    def _unpriced(self, ask: Ask) -> Refusal | None:
        s = self.service
        if s.max_usd is None or not ask.billed or ask.priced:
            return None
        return Refusal(
            403,
            "model_not_priced",
            f"service {s.name!r} has max_usd but no price for model {ask.model!r} — "
            "add it to the service's prices",
        )

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
        """An answer's usage, priced by the model it names (else the one asked for)."""
        price = self.service.price(usage.model) or self.service.price(request_model)
        with self._lock:
            self.input_tokens += usage.input_tokens
            self.output_tokens += usage.output_tokens
            if price is None:
                self.unpriced += int(usage.input_tokens + usage.output_tokens > 0)
                return
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
                    batched=self.batched,
                    unpriced=self.unpriced,
                )
            figures.update({f"status.{code}": n for code, n in sorted(self.statuses.items())})
        return {f"gateway.{self.service.name}.{k}": float(v) for k, v in figures.items()}


def _cap(name: str, cap: str) -> Refusal:
    return Refusal(
        429, "gateway_cap_reached", f"service {name!r} reached {cap} for this experiment"
    )
