"""The command agent's ways out: named services, each served by a gateway of its own on the host.

They are the contract's services (orchestrator/contract/services.py: upstream, the headers
the host adds from its environment, methods, paths, caps), declared as `[[agent.services]]`.
A kind of a known vendor fills in what its API needs and the entry left out:

    anthropic  the Messages API      x-api-key from ANTHROPIC_API_KEY       POST /v1/messages
    openai     OpenAI-compatible     authorization from OPENAI_API_KEY      POST /v1/responses,
                                     (sent as `Bearer <key>`)              /v1/chat/completions
    http       anything else (a local model server): upstream and paths are yours

Without `[[agent.services]]` the agent has one `llm` Messages API (Claude Code, as before);
`services = []` has none: no gateway, no key. A key is needed only for a service declared.
Inside the container each service is `AUTORESEARCH_SERVICE_<NAME>_URL`; the first of a
vendor's kind is also where its SDKs look (`ANTHROPIC_BASE_URL`; `OPENAI_BASE_URL`, with
`/v1`), with a placeholder key the gateway replaces. The key never enters the container.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.contract.services import Service

PLACEHOLDER_KEYS = {
    "anthropic": ("ANTHROPIC_API_KEY", "sk-ant-placeholder-the-gateway-adds-the-key"),
    "openai": ("OPENAI_API_KEY", "sk-placeholder-the-gateway-adds-the-key"),
}
"""What a vendor's CLI sees as its key: it needs one to start; the gateway drops it and adds
the host's."""
BASE_URLS = {"anthropic": ("ANTHROPIC_BASE_URL", ""), "openai": ("OPENAI_BASE_URL", "/v1")}
"""Where a vendor's SDKs look for the API, and what they expect after the service's URL."""
BEARER_PREFIX = "AUTORESEARCH_BEARER_"

KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "anthropic": {
        "name": "llm",
        "upstream": "https://api.anthropic.com",
        "upstream_env": "ANTHROPIC_BASE_URL",
        "headers": {"x-api-key": "ANTHROPIC_API_KEY"},
        "paths": ["/v1/messages"],
    },
    "openai": {
        "name": "openai",
        "upstream": "https://api.openai.com",
        "headers": {"authorization": "OPENAI_API_KEY"},
        "paths": ["/v1/responses", "/v1/chat/completions"],
    },
}
AGENT_DEFAULTS: dict[str, Any] = {"methods": ["POST"], "max_requests": None, "max_bytes": None}
"""An agent's session is long: no per-proposal request or byte cap unless one is set."""


def with_defaults(entries: list[Any]) -> list[Service]:
    """`[[agent.services]]` entries as services, each kind's defaults filled in where left out.

    Raises ValueError with one line naming the entry and the field."""
    from pydantic import ValidationError

    from orchestrator.contract.services import Service

    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, Service):
            out.append(entry)
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"services[{i}] must be a table")
        data = {**AGENT_DEFAULTS, **KIND_DEFAULTS.get(str(entry.get("kind", "http")), {}), **entry}
        try:
            out.append(Service.model_validate(data))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "entry"
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ValueError(f"services[{i}].{where}: {msg}") from None
    names = [s.name for s in out]
    for n in names:
        if names.count(n) > 1:
            raise ValueError(f"service {n!r} is named twice")
    return out


def default_llm(base_url: str | None, key_env: str) -> Service:
    """The agent's service when none are declared: the Messages API, for Claude Code."""
    entry: dict[str, Any] = {"kind": "anthropic", "headers": {"x-api-key": key_env}}
    if base_url:  # stated in the contract: it wins over the host's ANTHROPIC_BASE_URL
        entry.update(upstream=base_url, upstream_env=None)
    return with_defaults([entry])[0]


def _first(services: list[Service], kind: str) -> Service | None:
    return next((s for s in services if s.kind == kind), None)


def container_env(services: list[Service]) -> dict[str, str]:
    """The placeholder keys of the vendors' CLIs (only for a vendor with a service)."""
    return {
        var: value
        for kind, (var, value) in PLACEHOLDER_KEYS.items()
        if _first(services, kind) is not None
    }


CODEX_CONFIG = """mkdir -p "${CODEX_HOME:-$HOME/.codex}"
[ -e "${CODEX_HOME:-$HOME/.codex}/config.toml" ] || cat >"${CODEX_HOME:-$HOME/.codex}/config.toml" <<EOF
model_provider = "autoresearch"
[model_providers.autoresearch]
name = "the autoresearch gateway"
base_url = "$OPENAI_BASE_URL"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
supports_websockets = false
EOF"""
"""Codex's provider: the gateway, over HTTP (its WebSocket transport does not pass the gateway)."""


def prelude(services: list[Service]) -> str:
    """Shell lines run before the command: each vendor's base URL from its service's URL, and
    for an OpenAI-compatible one Codex's provider (unless its config is already there)."""
    lines = []
    for kind, (var, suffix) in BASE_URLS.items():
        s = _first(services, kind)
        if s is not None:
            url = f'"${{AUTORESEARCH_SERVICE_{s.name.upper()}_URL}}"{suffix}'  # suffix: "/v1" or ""
            lines.append(f"{var}={url}; export {var}")
    if _first(services, "openai") is not None:
        lines.append(CODEX_CONFIG)
    return "\n".join(lines)


def gateway_view(
    services: list[Service], environ: Mapping[str, str]
) -> tuple[list[Service], dict[str, str]]:
    """What the gateway serves: an `authorization` header whose variable holds a bare key is
    sent as `Bearer <key>`, read from a variable of the gateway's environment (memory only)."""
    env = dict(environ)
    out = []
    for s in services:
        headers = dict(s.headers)
        var = headers.get("authorization")
        value = env.get(var or "", "")
        if var and value and " " not in value.strip():
            headers["authorization"] = BEARER_PREFIX + var
            env[BEARER_PREFIX + var] = f"Bearer {value.strip()}"
        out.append(s.model_copy(update={"headers": headers}))
    return out, env


def refused_key(services: list[Service], figures: Mapping[str, float]) -> str | None:
    """The variable whose key an upstream refused (401, or 403 with nothing let through), as a
    one-line reason; None when no upstream refused one. The gateway's own refusals (403 for a
    path it does not let through) are told apart by its `refused` count."""
    for s in services:
        if not s.headers:
            continue
        g = f"gateway.{s.name}."
        codes = {k[len(g) + 7 :]: v for k, v in figures.items() if k.startswith(g + "status.")}
        unauthorised = codes.get("401", 0)
        forbidden = codes.get("403", 0) - figures.get(g + "refused", 0)
        passed = sum(v for c, v in codes.items() if c.startswith("2"))
        if unauthorised > 0 or (forbidden > 0 and not passed):
            code = 401 if unauthorised > 0 else 403
            names = " / ".join(sorted(set(s.headers.values())))
            return (
                f"the upstream of service {s.name} refused the key in {names} (HTTP {code}) — "
                f"set a valid key in {names} and resume the run"
            )
    return None


def token_figures(figures: Mapping[str, float]) -> dict[str, int]:
    """Input and output tokens over every service that counts them."""
    usage = {"input": 0, "output": 0}
    for k, v in figures.items():
        for side in usage:
            if k.startswith("gateway.") and k.endswith(f".{side}_tokens"):
                usage[side] += int(v)
    return usage
