"""Token usage in a Messages API answer, read as it streams past: JSON or server-sent events.

The upstream's bytes are data: parsed with `json` only, never logged. What cannot be
parsed counts as no usage (the request itself is still counted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_JSON = 16 * 1024**2
"""Most bytes of a plain JSON answer kept for reading its usage."""
MAX_LINE = 1024**2
"""Longest server-sent event line kept."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    """Input tokens, cache writes and reads included."""
    output_tokens: int = 0
    cache_write: int = 0
    cache_read: int = 0
    model: str | None = None


class BodyReader:
    """An answer's body fed in chunks: each server-sent event's data to `_event` as it
    streams, or the whole JSON body (`_whole`, at the end); at most MAX_JSON bytes of a JSON
    body and MAX_LINE of an event are ever held."""

    def __init__(self, content_type: str) -> None:
        self.stream = "text/event-stream" in content_type.lower()
        self._buf = bytearray()
        self._too_big = False
        self._model: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self._too_big:
            return
        self._buf += chunk
        if not self.stream:
            self._too_big = len(self._buf) > MAX_JSON
            return
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        for line in lines:
            if line.startswith(b"data:"):
                self._event(loads(bytes(line[5:])))
        if len(self._buf) > MAX_LINE:
            self._buf.clear()

    def _whole(self) -> Any:
        """The JSON body (None for a stream, a body too big, or one that is no JSON)."""
        return None if self.stream or self._too_big else loads(bytes(self._buf))

    def _event(self, data: Any) -> None:
        raise NotImplementedError


class UsageReader(BodyReader):
    """A Messages API answer; `usage()` at the end."""

    def __init__(self, content_type: str) -> None:
        super().__init__(content_type)
        self._counts: dict[str, int] = {}

    def usage(self) -> Usage:
        body = self._whole()
        if isinstance(body, dict):
            self._take(body.get("usage"), body.get("model"))
        c = self._counts
        write, read = c.get("cache_creation_input_tokens", 0), c.get("cache_read_input_tokens", 0)
        return Usage(
            input_tokens=c.get("input_tokens", 0) + write + read,
            output_tokens=c.get("output_tokens", 0),
            cache_write=write,
            cache_read=read,
            model=self._model,
        )

    def _event(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if data.get("type") == "message_start" and isinstance(data.get("message"), dict):
            self._take(data["message"].get("usage"), data["message"].get("model"))
        elif data.get("type") == "message_delta":
            self._take(data.get("usage"), None)

    def _take(self, usage: Any, model: Any) -> None:
        """Counts are cumulative in the API's events: the last one seen of each is the total."""
        if isinstance(model, str):
            self._model = model
        if not isinstance(usage, dict):
            return
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                self._counts[key] = value


def loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
