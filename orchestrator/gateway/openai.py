"""Token usage in an OpenAI-compatible answer, read as it streams past: JSON or server-sent events.

Both APIs such servers speak: Responses (`usage.input_tokens`, `output_tokens`,
`input_tokens_details.cached_tokens`; streamed, in the `response` of its
`response.completed` event) and Chat Completions (`usage.prompt_tokens`,
`completion_tokens`, `prompt_tokens_details.cached_tokens`; streamed, in the last
chunk when the request asked `stream_options.include_usage`). Input counts cached
tokens too, as the API does; they are priced at the model's `cache_read`. The
upstream's bytes are data: parsed with `json` only, never logged; what cannot be
parsed counts as no usage (the request itself is still counted).

`reader_for(service, content_type)` picks the reader of a service's kind: where the
gateway makes `UsageReader(content_type)` for an answer, it makes this instead.
"""

from __future__ import annotations

from typing import Any, Protocol

from orchestrator.contract.services import Service
from orchestrator.gateway.usage import BodyReader, Usage, UsageReader


class Reader(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def usage(self) -> Usage: ...


def reader_for(service: Service, content_type: str) -> Reader:
    """The usage reader of `service`'s kind for an answer of `content_type`."""
    if service.kind == "openai":
        return OpenAIUsageReader(content_type)
    return UsageReader(content_type)


class OpenAIUsageReader(BodyReader):
    """An OpenAI-compatible answer; `usage()` at the end."""

    def __init__(self, content_type: str) -> None:
        super().__init__(content_type)
        self._usage: dict[str, Any] = {}

    def usage(self) -> Usage:
        self._take(self._whole())
        u = self._usage
        responses = "input_tokens" in u or "output_tokens" in u
        inp = _count(u, "input_tokens" if responses else "prompt_tokens")
        out = _count(u, "output_tokens" if responses else "completion_tokens")
        details = u.get("input_tokens_details" if responses else "prompt_tokens_details")
        cached = _count(details, "cached_tokens") if isinstance(details, dict) else 0
        return Usage(
            input_tokens=inp,
            output_tokens=out,
            cache_read=min(cached, inp),
            model=self._model,
        )

    def _event(self, data: Any) -> None:
        self._take(data)

    def _take(self, data: Any) -> None:
        """A body, an event or a chunk: its `usage` (or its `response`'s) is the total so far."""
        if not isinstance(data, dict):
            return
        inner = data.get("response")
        body = inner if isinstance(inner, dict) else data
        if isinstance(body.get("model"), str):
            self._model = body["model"]
        if isinstance(body.get("usage"), dict):
            self._usage = body["usage"]


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
