"""A small fake of an OpenAI-compatible API on a loopback port: Responses and Chat Completions.

Serves a script of answers in order, each as the request asks (`stream` true: server-sent
events, as the API streams them; else JSON): a message, a function call, or an HTTP error.
A streamed Chat Completions answer carries its usage in a last chunk only when the request
asked `stream_options.include_usage`, as the API does. Records every request body and its
headers (lowercase names).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Usage = dict[str, int]


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "text": text}


def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function_call", "name": name, "arguments": json.dumps(arguments)}


def custom(name: str, text: str) -> dict[str, Any]:
    """A call of a freeform tool (Responses only): Codex's `exec`, whose input is JavaScript."""
    return {"type": "custom_tool_call", "name": name, "input": text}


class FakeOpenAI:
    def __init__(self, model: str = "gpt-5-mini") -> None:
        self.model = model
        self.script: deque[tuple[dict[str, Any], Usage] | tuple[int, str]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._ids = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # /v1/models: what a CLI may ask first
                self._json(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                with fake._lock:
                    fake.requests.append(body)
                    fake.paths.append(self.path)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = fake.script.popleft() if fake.script else (500, "server_error")
                    fake._ids += 1
                    n = fake._ids
                if isinstance(step[0], int):
                    status, code = step
                    error = {"message": code, "type": code, "code": code}
                    return self._json(status, {"error": error})
                item, usage = step
                chat = self.path.rstrip("/").endswith("/chat/completions")
                whole, events = (fake._chat if chat else fake._responses)(n, item, usage, body)
                if not body.get("stream"):
                    return self._json(200, whole)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for event, data in events:
                    head = f"event: {event}\n" if event else ""
                    self.wfile.write(f"{head}data: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                if chat:
                    self.wfile.write(b"data: [DONE]\n\n")

            def _json(self, status: int, data: Any) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- scripting ----------------------------------------------------------
    def answer(self, item: dict[str, Any], input_tokens: int = 1200, output_tokens: int = 80,
               cached: int = 200) -> None:  # fmt: skip
        """The next answer: `message(text)` or `call(name, args)`, with this usage."""
        usage = {"input": input_tokens, "output": output_tokens, "cached": cached}
        self.script.append((item, usage))

    def error(self, status: int, code: str) -> None:
        self.script.append((status, code))

    # -- rendering ----------------------------------------------------------
    def _responses(self, n: int, item: dict[str, Any], u: Usage, body: dict[str, Any]) -> tuple[Any, list[tuple[str, Any]]]:  # fmt: skip
        """The Responses API's answer: (its JSON, its events)."""
        if item["type"] == "message":
            out = {"id": f"msg_{n}", "type": "message", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": item["text"], "annotations": []}]}  # fmt: skip
        else:
            out = {**item, "id": f"fc_{n}", "status": "completed", "call_id": f"call_{n}"}
        usage = {"input_tokens": u["input"], "input_tokens_details": {"cached_tokens": u["cached"]},
                 "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": u["input"] + u["output"]}  # fmt: skip
        base = {"id": f"resp_{n}", "object": "response", "created_at": int(time.time()),
                "model": self.model, "status": "in_progress", "output": [], "usage": None}  # fmt: skip
        done = {**base, "status": "completed", "output": [out], "usage": usage}
        events: list[tuple[str, Any]] = [
            ("response.created", {"type": "response.created", "response": base})
        ]
        events.append(("response.output_item.added", {"type": "response.output_item.added",
                       "output_index": 0, "item": {**out, "status": "in_progress"}}))  # fmt: skip
        if item["type"] == "message":
            events.append(("response.output_text.delta", {"type": "response.output_text.delta",
                           "item_id": out["id"], "output_index": 0, "content_index": 0, "delta": item["text"]}))  # fmt: skip
        events.append(("response.output_item.done", {"type": "response.output_item.done",
                       "output_index": 0, "item": out}))  # fmt: skip
        events.append(("response.completed", {"type": "response.completed", "response": done}))
        return done, events

    def _chat(self, n: int, item: dict[str, Any], u: Usage, body: dict[str, Any]) -> tuple[Any, list[tuple[str, Any]]]:  # fmt: skip
        """Chat Completions' answer: (its JSON, its chunks; a usage chunk only when asked)."""
        usage = {"prompt_tokens": u["input"], "completion_tokens": u["output"],
                 "total_tokens": u["input"] + u["output"],
                 "prompt_tokens_details": {"cached_tokens": u["cached"]}}  # fmt: skip
        if item["type"] == "message":
            msg: dict[str, Any] = {"role": "assistant", "content": item["text"]}
            stop = "stop"
        else:
            msg = {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{n}",
                   "type": "function", "function": {"name": item["name"], "arguments": item["arguments"]}}]}  # fmt: skip
            stop = "tool_calls"
        head = {"id": f"chatcmpl-{n}", "created": int(time.time()), "model": self.model}
        whole = {**head, "object": "chat.completion", "usage": usage,
                 "choices": [{"index": 0, "message": msg, "finish_reason": stop}]}  # fmt: skip
        chunk = {**head, "object": "chat.completion.chunk", "usage": None}
        chunks: list[tuple[str, Any]] = [
            ("", {**chunk, "choices": [{"index": 0, "delta": msg, "finish_reason": None}]}),
            ("", {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": stop}]}),
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append(("", {**chunk, "choices": [], "usage": usage}))
        return whole, chunks
