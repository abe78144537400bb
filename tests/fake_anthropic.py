"""A small fake of the Anthropic Messages API on a loopback port, for the real SDK.

Serves a script of responses in order: streamed messages (SSE), HTTP errors
(JSON bodies, as the API sends them), and streams that break with an `error`
event in mid-stream. Records every request body and its headers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Block = dict[str, Any]


def text(t: str) -> Block:
    return {"type": "text", "text": t}


def tool(name: str, **args: Any) -> Block:
    return {"type": "tool_use", "name": name, "input": args}


def edit(command: str, **args: Any) -> Block:
    return tool("str_replace_based_edit_tool", command=command, **args)


class FakeAnthropic:
    def __init__(self, model: str = "claude-sonnet-5-5") -> None:
        self.model = model
        self.script: deque[tuple[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        """Every request's headers (lowercase names), in order."""
        self._ids = 0
        self.delay_s = 0.0
        """How long each response takes to start (conversations in flight overlap)."""
        self.active = self.most_active = 0
        """Requests being answered now, and the most at once."""
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with fake._lock:
                    fake.active += 1
                    fake.most_active = max(fake.most_active, fake.active)
                try:
                    self._answer()
                finally:
                    with fake._lock:
                        fake.active -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    kind, payload = (
                        fake.script.popleft() if fake.script else ("error", (500, "api_error"))
                    )
                time.sleep(fake.delay_s)
                if kind == "error":
                    status, etype = payload
                    data = json.dumps(
                        {"type": "error", "error": {"type": etype, "message": etype}}
                    ).encode()
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("retry-after-ms", "5")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for event, data in payload:
                    self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeAnthropic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- scripting ----------------------------------------------------------
    def error(self, status: int, etype: str) -> None:
        self.script.append(("error", (status, etype)))

    def message(
        self, *blocks: Block, usage: dict[str, int] | None = None, break_with: str | None = None
    ) -> None:
        """A streamed assistant message; `break_with` ends the stream early with that error event."""
        u = {
            "input_tokens": 1000,
            "output_tokens": 100,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        u.update(usage or {})
        self._ids += 1
        events: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": {
            "id": f"msg_{self._ids}", "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**u, "output_tokens": 1}}})]  # fmt: skip
        if break_with:
            events.append(
                ("error", {"type": "error", "error": {"type": break_with, "message": "Overloaded"}})
            )
            self.script.append(("sse", events))
            return
        stop = "end_turn"
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))  # fmt: skip
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "text_delta", "text": b["text"]}}))  # fmt: skip
            else:
                stop = "tool_use"
                self._ids += 1
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": f"toolu_{self._ids}", "name": b["name"], "input": {}}}))  # fmt: skip
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(b["input"])}}))  # fmt: skip
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                         "usage": {"output_tokens": u["output_tokens"]}}))  # fmt: skip
        events.append(("message_stop", {"type": "message_stop"}))
        self.script.append(("sse", events))
