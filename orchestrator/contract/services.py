"""`[[sandbox.services]]`: the named services a run stage may reach through the gateway.

A service is an upstream base URL the host's gateway forwards to (orchestrator/gateway/),
the headers it adds from the host's environment (an API key: never in the container),
the methods and exact paths it lets through, the prices it counts USD by, and
per-experiment caps. Inside the container a service is `AUTORESEARCH_SERVICE_<NAME>_URL`
(a loopback URL); nothing else is reachable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from orchestrator.agents.prices import DEFAULT_PRICES, Price
from orchestrator.schema import Model as _Model

_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_SEGMENT = re.compile(r"^[A-Za-z0-9_~:@!$&'()+,;=-][A-Za-z0-9._~:@!$&'()+,;=-]*$")
_RELEASE = re.compile(r"[-@](?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
"""What a model name adds to its family's: a release date (`-20250929`, Vertex's `@20250929`,
`-2024-08-06`) or the `-latest` alias."""
BATCHES = "/v1/messages/batches"
"""The Message Batches API: billed after the run ends, so let through only when named."""


class Service(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """Lowercase identifier; the container sees `AUTORESEARCH_SERVICE_<NAME>_URL`."""

    kind: Literal["http", "anthropic", "openai"] = "http"
    """`anthropic`: a Messages API; `openai`: an OpenAI-compatible API (Responses, Chat
    Completions). The gateway counts the `usage` of their answers (tokens, USD)."""

    upstream: str
    """Base URL (http or https) the gateway forwards to, e.g. `https://api.anthropic.com`."""

    upstream_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """A host environment variable that, when set, is the upstream instead (a proxy, or a local
    fake: `ANTHROPIC_BASE_URL=http://127.0.0.1:8765`); None = always `upstream`."""

    headers: dict[str, str] = Field(default_factory=dict)
    """Header → name of the host environment variable whose value the gateway adds
    (`{"x-api-key" = "ANTHROPIC_API_KEY"}`); a header of that name from the container is dropped."""

    methods: list[str] = Field(default_factory=lambda: ["POST"])
    """HTTP methods let through; any other gets 405."""

    paths: list[str] = Field(min_length=1)
    """Paths let through, each matched exactly (`/v1/messages` is the Messages endpoint only, not
    `/v1/messages/batches` nor `/v1/messages/count_tokens`); any other gets 403. A `*` segment
    matches one segment (`/v1/messages/batches/*`); a last `**` segment matches any rest
    (`/v1/files/**`: a prefix, asked for explicitly). The Message Batches endpoints
    (`/v1/messages/batches...`, billed after the run ends) pass only when an entry names them;
    for `kind = "anthropic"` a batch is then counted when it is created (see `max_usd`)."""

    max_requests: int | None = Field(default=1000, ge=1)
    """Requests per experiment (per run); the next one gets 429. None = no limit."""

    max_bytes: int | None = Field(default=64 * 1024**2, ge=1)
    """Request plus response body bytes per run; past it, 429. None = no limit."""

    max_tokens: int | None = Field(default=None, ge=1)
    """`anthropic`, `openai`: input + output tokens per run; once reached, the next request
    gets 429."""

    max_usd: float | None = Field(default=None, gt=0)
    """`anthropic`: USD per run (by `prices`); once reached, 429. A request naming a model with no
    price is then refused (403, `model_not_priced`), as is a batch holding one. A batch is charged
    when created, at the full (not batch) price, for each request's body bytes as input tokens
    plus 1,000, and its `max_tokens` as output; each of its requests counts in `max_requests`."""

    prices: dict[str, Price] = DEFAULT_PRICES
    """`anthropic`: USD per million tokens by model family (`claude-sonnet-4-5`). A model is priced
    by its own entry, else by its family's: its name less a release suffix
    (`claude-sonnet-4-5-20250929`, `claude-sonnet-4-5@20250929`, `claude-sonnet-4-5-latest`).
    Any other name has no price: refused under `max_usd`, else counted in `.unpriced`."""

    @field_validator("upstream")
    @classmethod
    def _url(cls, v: str) -> str:
        return base_url(v)

    @property
    def counts_tokens(self) -> bool:
        """An LLM API: the gateway reads each answer's usage (tokens, USD)."""
        return self.kind != "http"

    def price(self, model: str | None) -> Price | None:
        """`model`'s price: its own entry, else its family's (`prices`); None when it has none."""
        if not model:
            return None
        return self.prices.get(model) or self.prices.get(_RELEASE.sub("", model))

    def names_batches(self) -> bool:
        """An entry of `paths` names the Message Batches endpoints (they pass only then)."""
        return any(p == BATCHES or p.startswith(BATCHES + "/") for p in self.paths)

    def resolved(self, environ: Mapping[str, str]) -> str:
        """The upstream of this run: `upstream_env`'s value when set (ValueError if no base URL)."""
        value = environ.get(self.upstream_env) if self.upstream_env else None
        return base_url(value) if value else self.upstream

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for header, env in v.items():
            if not _HEADER.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
            if not _ENV.match(env):
                raise ValueError(
                    f"{env!r} (for header {header!r}) must name a host environment variable, "
                    "not hold the secret itself"
                )
        return {k.lower(): e for k, e in v.items()}

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        out = [m.upper() for m in v]
        for m in out:
            if m not in _METHODS:
                raise ValueError(f"{m!r} is not one of {', '.join(_METHODS)}")
        return out

    @field_validator("paths")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for p in v:
            if not _pattern(p):
                raise ValueError(
                    f"{p!r} must be a plain absolute path, e.g. '/v1/messages' (a segment may be "
                    "'*' for any one segment; a last '**' for any rest)"
                )
        return v

    @model_validator(mode="after")
    def _llm_caps(self) -> Service:
        if self.kind == "http" and (self.max_tokens is not None or self.max_usd is not None):
            raise ValueError(
                f"service {self.name!r}: max_tokens and max_usd need kind = 'anthropic' or 'openai'"
            )
        return self


def _pattern(path: str) -> bool:
    """Plain segments (no dot segment, no escape); `*` for one segment; a last `**` for any rest."""
    if not path.startswith("/"):
        return False
    *inner, last = path[1:].split("/")
    return all(s == "*" or _SEGMENT.match(s) for s in inner) and (
        last in ("", "*", "**") or bool(_SEGMENT.match(last))
    )


def base_url(v: str) -> str:
    """`v` without its trailing slash, when it is an http(s) base URL; else ValueError."""
    u = urlsplit(v)
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
        raise ValueError(
            f"{v!r} is not an http(s) base URL; write e.g. 'https://api.anthropic.com'"
        )
    if u.username or u.password:
        raise ValueError(f"{v!r} holds credentials; name them in `headers` from the environment")
    return v.rstrip("/")


def _unique(services: list[Service]) -> list[Service]:
    names = [s.name for s in services]
    for n in names:
        if names.count(n) > 1:
            raise ValueError(f"service {n!r} is named twice")
    return services


Services = Annotated[list[Service], AfterValidator(_unique)]
