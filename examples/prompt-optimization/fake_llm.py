"""A deterministic stand-in for Claude's Messages API, for the prompt-optimization example offline.

Run it on the host (it listens on 127.0.0.1 only), then point the contract's service at it:

    python examples/prompt-optimization/fake_llm.py --port 8765 &
    ANTHROPIC_BASE_URL=http://127.0.0.1:8765 ANTHROPIC_API_KEY=offline \\
        autoresearch run contracts/prompt-optimization.toml

Its "model" solves the arithmetic question in the prompt, with habits a prompt can change
(so a better prompt is learnable):
- a product over 100 comes out 10 too high, unless the prompt asks to double-check
  multiplications (or to think step by step);
- a negative difference loses its sign, unless the prompt asks to think step by step, which
  also makes it write out its work first (many more output tokens);
- it replies with the bare number only when asked for "only the number", else in a sentence.
Usage is counted as one token per 4 characters, in and out. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_QUESTION = re.compile(r"(-?\d+)\s*([+\-*])\s*(-?\d+)")


def answer(prompt: str) -> str:
    """What the fake model says to `prompt`."""
    low = prompt.lower()
    m = _QUESTION.search(prompt)
    if m is None:
        return "I could not find a question to answer."
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    true = a + b if op == "+" else a - b if op == "-" else a * b
    steps = "step by step" in low
    got = true
    if op == "*" and true > 100 and not (steps or "double-check" in low):
        got = true + 10
    if op == "-" and true < 0 and not steps:
        got = -true
    bare = "only the number" in low or "alone on the last line" in low
    if steps:
        work = [
            f"We need {a} {op} {b}.",
            f"First, take {a}; then apply {op} with {b}, digit by digit, carrying where needed.",
            f"Checking the sign and the size of the result, {a} {op} {b} comes to {got}.",
        ]
        return "\n".join([*work, str(got) if bare else f"So the answer is {got}."])
    return str(got) if bare else f"The answer is {got}."


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def reply(request: dict[str, Any]) -> dict[str, Any]:
    """A Messages API answer (non-streaming) to a request body."""
    parts = [request.get("system") or ""]
    for message in request.get("messages", []):
        content = message.get("content", "")
        if isinstance(content, list):
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        parts.append(str(content))
    prompt = "\n".join(p for p in parts if p)
    text = answer(prompt)
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "claude-haiku-4-5"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": _tokens(prompt), "output_tokens": _tokens(text)},
    }


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            data = json.dumps(reply(json.loads(body))).encode()
            status = 200
        except (ValueError, AttributeError, TypeError):
            data = json.dumps(
                {"type": "error", "error": {"type": "invalid_request_error", "message": "bad body"}}
            ).encode()
            status = 400
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def server(port: int = 0) -> ThreadingHTTPServer:
    """The fake on 127.0.0.1:`port` (0 = a free one), not yet serving."""
    return _Server(("127.0.0.1", port), _Handler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    srv = server(parser.parse_args().port)
    print(f"fake Messages API on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()
