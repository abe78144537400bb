"""`[[sandbox.services]]`: the named services a run stage may reach through the gateway.

A service is an upstream base URL the host's gateway forwards to (orchestrator/gateway/),
the headers it adds from the host's environment (an API key: never in the container),
the methods and path prefixes it lets through, and per-experiment caps. Inside the
container a service is `AUTORESEARCH_SERVICE_<NAME>_URL` (a loopback URL); nothing else
is reachable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from orchestrator.agents.config import DEFAULT_PRICES, Price
from orchestrator.schema import Model as _Model

_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Service(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    """Lowercase identifier; the container sees `AUTORESEARCH_SERVICE_<NAME>_URL`."""

    kind: Literal["http", "anthropic"] = "http"
    """`anthropic`: a Messages API, whose responses' `usage` the gateway counts (tokens, USD)."""

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
    """Path prefixes let through (`/v1/messages` allows it and `/v1/messages/...`); others get 403."""

    max_requests: int | None = Field(default=1000, ge=1)
    """Requests per experiment (per run); the next one gets 429. None = no limit."""

    max_bytes: int | None = Field(default=64 * 1024**2, ge=1)
    """Request plus response body bytes per run; past it, 429. None = no limit."""

    max_tokens: int | None = Field(default=None, ge=1)
    """`anthropic`: input + output tokens per run; once reached, the next request gets 429."""

    max_usd: float | None = Field(default=None, gt=0)
    """`anthropic`: USD per run (by `prices`); once reached, 429. A model without a price is
    then refused (403)."""

    prices: dict[str, Price] = DEFAULT_PRICES
    """`anthropic`: USD per million tokens by model."""

    @field_validator("upstream")
    @classmethod
    def _url(cls, v: str) -> str:
        return base_url(v)

    @property
    def counts_tokens(self) -> bool:
        """A Messages API: the gateway reads each answer's usage (tokens, USD)."""
        return self.kind != "http"

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
            if not p.startswith("/") or any(c in p for c in "?#%\\") or "/." in p or "//" in p:
                raise ValueError(f"{p!r} must be a plain absolute path prefix, e.g. '/v1/messages'")
        return v

    @model_validator(mode="after")
    def _llm_caps(self) -> Service:
        if self.kind != "anthropic" and (self.max_tokens is not None or self.max_usd is not None):
            raise ValueError(
                f"service {self.name!r}: max_tokens and max_usd need kind = 'anthropic'"
            )
        return self


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
