"""Which operation a request is, and what it asks of the caps, read from its line and body.

A path passes by exact match against the service's `paths` (a `*` segment matches one
segment, a last `**` any rest: orchestrator/contract/services.py), never by prefix. For a
Messages API the Message Batches endpoints pass only when the contract names them, and a
batch is charged when it is created, by its requests' bounds: its results are billed after
the run has ended, when no answer passes through here to be counted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from orchestrator.contract.services import BATCHES, Service
from orchestrator.gateway.usage import loads

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_NEVER_ESCAPED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\")
"""What a client never escapes (RFC 3986's unreserved characters, and the separators): escaped,
it can only be meant to read as another path upstream (`/v1/messages/%62atches`)."""
UNBILLED = frozenset({"/v1/messages/count_tokens"})
"""Messages API operations that cost no tokens (besides reading and the batches' own)."""
READS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
BATCH_OVERHEAD = 1000
"""Input tokens charged per batch request on top of its body bytes (the system prompt the API
adds for tools); a token is at least one byte of text, so bytes bound the rest."""


@dataclass(frozen=True)
class Refusal:
    status: int
    kind: str
    message: str


@dataclass(frozen=True)
class Ask:
    """What one request asks of the caps before it goes upstream."""

    billed: bool = False
    """It costs tokens: under `max_usd` its models need a price."""
    model: str | None = None
    """The model a Messages request names; for a batch, the first one with no price."""
    priced: bool = True
    """Every model it names has a price."""
    requests: int = 1
    """Messages requests it makes upstream under the host's key (a batch: one per entry)."""
    batch: bool = False
    """A new batch: charged now by its bounds, its answers never counted."""
    input_tokens: int = 0
    """Charged now, before any answer: a batch's bound (0 for a request counted by its answer)."""
    output_tokens: int = 0
    usd: float = 0.0


def path_of(target: str) -> str | None:
    """The path of a request target when it is plain: absolute, no dot segment, nothing escaped."""
    path = target.split("?", 1)[0]
    if not path.startswith("/") or "\\" in path:
        return None
    if any(chr(int(h, 16)) in _NEVER_ESCAPED for h in _ESCAPE.findall(path)):
        return None
    if any(seg in (".", "..") for seg in path.split("/")):
        return None
    return path


def matches(path: str, pattern: str) -> bool:
    """`path` is `pattern`, segment by segment (`*`: any one; a last `**`: any rest, or none)."""
    want, got = pattern.split("/"), path.split("/")
    if want[-1] == "**":
        want = want[:-1]
        got = got[: len(want)] if len(got) >= len(want) else got
    return len(want) == len(got) and all(
        w == g or (w == "*" and g != "") for w, g in zip(want, got, strict=True)
    )


def allowed(service: Service, target: str) -> bool:
    """The service lets `target` through: a plain path it names (batches only when named)."""
    path = path_of(target)
    if path is None or "//" in path or not any(matches(path, p) for p in service.paths):
        return False
    return service.names_batches() or not _batches(path)


def ask(service: Service, method: str, target: str, body: bytes) -> Ask | Refusal:
    """What the request asks (a Messages API's: its model, or a batch's bounds), or why not."""
    path = (path_of(target) or "").lower()
    if not service.counts_tokens or method in READS or path in UNBILLED:
        return Ask()
    if _batches(path) and path.rstrip("/") != BATCHES:
        return Ask()  # cancelling a batch (its results and status are reads)
    data = loads(body)
    fields: dict[str, Any] = data if isinstance(data, dict) else {}
    if _batches(path):
        return batch(service, fields)
    if fields.get("background") is True:  # OpenAI's Responses: answered later, uncounted
        return Refusal(
            403,
            "background_not_allowed",
            "a background (asynchronous) response is billed after the run ends: ask without it",
        )
    model = fields.get("model") if isinstance(fields.get("model"), str) else None
    return Ask(billed=True, model=model, priced=service.price(model) is not None)


def _batches(path: str) -> bool:
    """`path` is a Message Batches endpoint, in any case (an upstream may not care)."""
    lower = path.lower()
    return lower.rstrip("/") == BATCHES or lower.startswith(BATCHES + "/")


def batch(service: Service, fields: dict[str, Any]) -> Ask | Refusal:
    """A new batch, charged now: each request's params bytes (+ overhead) in, max_tokens out."""
    entries = fields.get("requests")
    if not isinstance(entries, list) or not entries:
        return Refusal(400, "invalid_request_error", "a batch needs a list of requests")
    tokens_in = tokens_out = 0
    usd, unpriced = 0.0, None
    for entry in entries:
        bounds = _bounds(entry)
        if bounds is None:
            return Refusal(
                400,
                "invalid_request_error",
                "each batch request needs params.model and params.max_tokens: "
                "the gateway charges a batch by them when it is created",
            )
        model, n_in, n_out = bounds
        tokens_in, tokens_out = tokens_in + n_in, tokens_out + n_out
        price = service.price(model)
        if price is None:
            unpriced = unpriced or model
        else:
            usd += (n_in * price.input + n_out * price.output) / 1e6
    return Ask(
        billed=True,
        model=unpriced,
        priced=unpriced is None,
        requests=len(entries),
        batch=True,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        usd=usd,
    )


def _bounds(entry: Any) -> tuple[str, int, int] | None:
    """(model, most input tokens, most output tokens) of one batch request; None if unbounded."""
    params = entry.get("params") if isinstance(entry, dict) else None
    if not isinstance(params, dict):
        return None
    model, most = params.get("model"), params.get("max_tokens")
    if not isinstance(model, str) or not isinstance(most, int) or isinstance(most, bool):
        return None
    if most < 1:
        return None
    return model, len(json.dumps(params)) + BATCH_OVERHEAD, most
