"""The gateway's attack round: the key echoed back, endpoints by prefix, dated model names,
steering headers, and a flood of the host's own process. Each attack runs end to end from a
real container (runc and runsc) against a fake upstream on 127.0.0.1; each failed before
its fix."""

from __future__ import annotations

import gzip
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.agents.config import DEFAULT_PRICES
from orchestrator.contract.metrics import measured
from tests.bench_gateway import BIG_BODY, flood
from tests.test_gateway import llm, run

KEY = "sk-ant-attack-" + secrets.token_hex(16)
DATED = "claude-sonnet-4-5-20250929"
USAGE = {"input_tokens": 100_000, "output_tokens": 10_000}
STEERING = {
    "X-HTTP-Method-Override": "DELETE", "X-Method-Override": "DELETE", "X-HTTP-Method": "DELETE",
    "X-Original-URL": "/admin", "X-Rewrite-URL": "/admin", "X-Original-URI": "/admin",
    "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Host": "admin.internal",
    "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/admin", "X-Real-IP": "10.0.0.1",
    "Forwarded": "for=10.0.0.1", "Connection": "close, X-Steer", "X-Steer": "1",
    "Keep-Alive": "timeout=99", "Proxy-Foo": "1", "TE": "trailers", "Trailer": "X-T",
    "Upgrade": "websocket",
}  # fmt: skip


class Upstream:
    """A fake upstream on 127.0.0.1 that records every request and answers by its `x-mode`:
    `echo` (every request header and value, in the answer's headers, status line and body),
    `split` (a stream with the key cut across two writes), `gzip` (the echo, compressed
    though the gateway asked for identity), else a Messages answer from `model` with USAGE."""

    def __init__(self, model: str = DATED) -> None:
        self.requests: list[dict[str, Any]] = []
        up = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                up.requests.append(
                    {"path": self.path, "headers": self.headers.items(), "body": body}
                )
                mode = self.headers.get("x-mode", "")
                echo = dict(self.headers.items())
                if mode == "split":
                    return self._split(echo.get("x-api-key", ""))
                data = json.dumps(
                    {"type": "message", "model": model, "usage": USAGE, "echo": echo}
                ).encode()
                if mode == "gzip":
                    data = gzip.compress(data)
                reason = f"OK {echo.get('x-api-key')}" if mode == "echo" else "OK"
                self.send_response(200, reason)
                for k, v in echo.items() if mode == "echo" else ():
                    self.send_header(f"x-echo-{k}", v)
                    self.send_header(f"x-named-{v}", "a header named after the value")
                self.send_header("content-type", "application/json")
                self.send_header("content-encoding", "gzip" if mode == "gzip" else "identity")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _split(self, key: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                half = len(key) // 2
                for part in (
                    b"data: before " + key[:half].encode(),
                    key[half:].encode() + b" after\n\n",
                ):
                    self.wfile.write(part)
                    self.wfile.flush()
                    time.sleep(0.2)

            do_GET = do_POST = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module", params=["runc", "runsc"])
def runtime(request, docker_client: docker.DockerClient) -> str:  # type: ignore[no-untyped-def]
    if request.param not in (docker_client.info().get("Runtimes") or {}):
        pytest.skip(f"{request.param} is not registered with this Docker engine")
    return str(request.param)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KEY", KEY)


FETCH = """
import gzip, http.client


def fetch(path, headers, body=b'{"model": "claude-haiku-4-5"}'):
    host, port = URL.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("POST", path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    if r.getheader("content-encoding") == "gzip":
        data = gzip.decompress(data)
    return {"status": r.status, "reason": r.reason, "headers": r.getheaders(), "body": data.decode()}
"""


def test_an_echoing_upstream_never_hands_the_key_back(
    tmp_path: Path, sandbox: Any, runtime: str, upstream: Upstream
) -> None:
    script = (
        FETCH
        + """
out["answers"] = [fetch("/v1/messages", {"x-mode": m, "x-api-key": "forged"}) for m in ("echo", "split", "gzip")]
"""
    )
    result, out = run(
        tmp_path, sandbox, script, [llm(upstream.url)], **{"sandbox.runtime": runtime}
    )
    echo, split, gzipped = out["answers"]
    assert KEY not in json.dumps(out) and KEY not in result.output, "the host's key came back"
    keys = [v for r in upstream.requests for k, v in r["headers"] if k.lower() == "x-api-key"]
    assert keys == [KEY] * 3  # added on the host, the container's own dropped
    assert echo["status"] == 200 and "redacted" in echo["reason"]
    assert json.loads(echo["body"])["echo"]["x-api-key"] == "[redacted by the gateway]"
    assert split["status"] == 200 and split["body"].startswith("data: before [redacted")
    assert split["body"].endswith(" after\n\n")  # only the key is cut, as it streams
    assert gzipped["status"] == 502 and "not identity" in gzipped["body"]  # unreadable: refused
    assert measured(result)["gateway.llm.status.502"] == 1


BATCH = """
def batch(n, max_tokens):
    entry = {"params": {"model": "claude-haiku-4-5", "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": "hi"}]}}
    return json.dumps({"requests": [dict(entry, custom_id=f"r{i}") for i in range(n)]}).encode()
"""


def test_batches_are_refused_unless_named_and_then_charged(
    tmp_path: Path, sandbox: Any, runtime: str, upstream: Upstream
) -> None:
    plain = llm(upstream.url, kind="anthropic")
    named = llm(upstream.url, name="batches", kind="anthropic", max_requests=100, max_usd=1.0,
                paths=["/v1/messages", "/v1/messages/batches", "/v1/messages/batches/*"])  # fmt: skip
    script = (
        BATCH
        + """
out["batch"] = call("POST", "/v1/messages/batches", body=batch(1000, 64000))
out["under"] = call("POST", "/v1/messages/batches/b1/cancel")
out["count"] = call("POST", "/v1/messages/count_tokens")
out["messages"] = call("POST", "/v1/messages", body=b'{"model": "claude-haiku-4-5"}')
out["background"] = call("POST", "/v1/messages", body=b'{"model": "claude-haiku-4-5", "background": true}')
URL = os.environ["AUTORESEARCH_SERVICE_BATCHES_URL"]
out["too_many"] = call("POST", "/v1/messages/batches", body=batch(1000, 10))
out["too_dear"] = call("POST", "/v1/messages/batches", body=batch(50, 64000))
out["small"] = call("POST", "/v1/messages/batches", body=batch(2, 1000))
out["unbounded"] = call("POST", "/v1/messages/batches", body=b'{"requests": [{"params": {}}]}')
"""
    )
    result, out = run(tmp_path, sandbox, script, [plain, named], **{"sandbox.runtime": runtime})
    statuses = {k: v[0] for k, v in out.items()}
    assert statuses == {"batch": 403, "under": 403, "count": 403, "messages": 200, "background": 403,
                        "too_many": 429, "too_dear": 429, "small": 200, "unbounded": 400}  # fmt: skip
    assert "max_requests = 100" in out["too_many"][1] and "max_usd = 1" in out["too_dear"][1]
    assert [r["path"] for r in upstream.requests] == ["/v1/messages", "/v1/messages/batches"]
    m = measured(result)
    assert m["gateway.llm.requests"] == 1 and m["gateway.llm.status.403"] == 4
    assert m["gateway.batches.requests"] == 2 and m["gateway.batches.batched"] == 2
    assert m["gateway.batches.output_tokens"] == 2000  # charged at creation, by its bounds
    p = DEFAULT_PRICES["claude-haiku-4-5"]
    assert m["gateway.batches.usd"] >= 2 * (1000 * p.input + 1000 * p.output) / 1e6


def test_a_dated_model_name_is_priced_by_its_family(
    tmp_path: Path, sandbox: Any, runtime: str, upstream: Upstream
) -> None:
    script = """
for name, model in [("unknown", "claude-mystery-9"), ("dated", "claude-sonnet-4-5-20250929"),
                    ("family", "claude-sonnet-4-5"), ("over", "claude-sonnet-4-5")]:
    out[name] = call("POST", "/v1/messages", body=json.dumps({"model": model}).encode())
"""
    service = llm(upstream.url, kind="anthropic", max_usd=0.5)
    result, out = run(tmp_path, sandbox, script, [service], **{"sandbox.runtime": runtime})
    assert {k: v[0] for k, v in out.items()} == {
        "unknown": 403, "dated": 200, "family": 200, "over": 429,
    }  # fmt: skip
    error = json.loads(out["unknown"][1])["error"]
    assert error["type"] == "model_not_priced" and "claude-mystery-9" in error["message"]
    p = DEFAULT_PRICES["claude-sonnet-4-5"]
    m = measured(result)
    one = (USAGE["input_tokens"] * p.input + USAGE["output_tokens"] * p.output) / 1e6
    assert m["gateway.llm.usd"] == pytest.approx(2 * one)  # every answer said DATED
    assert m["gateway.llm.status.403"] == 1 and m["gateway.llm.refused"] == 2
    assert len(upstream.requests) == 2


def test_steering_and_hop_by_hop_headers_never_reach_the_upstream(
    tmp_path: Path, sandbox: Any, runtime: str, upstream: Upstream
) -> None:
    lines = "".join(f"{k}: {v}\\r\\n" for k, v in STEERING.items())
    script = f"""
def raw_request(headers):
    return raw("POST /v1/messages HTTP/1.1\\r\\nhost: x\\r\\ncontent-length: 2\\r\\n" + headers + "\\r\\n{{}}")

out["steered"] = raw_request("{lines}X-Benign: kept\\r\\n")
out["folded"] = raw_request("X-Benign: a\\r\\n X-HTTP-Method-Override: DELETE\\r\\n")
out["folded_tab"] = raw_request("X-Benign: a\\r\\n\\tX-Original-URL: /admin\\r\\n")
out["chunked"] = raw_request("Transfer-Encoding: chunked\\r\\n")
out["twice"] = raw_request("Content-Length: 2\\r\\n")
"""
    result, out = run(
        tmp_path, sandbox, script, [llm(upstream.url)], **{"sandbox.runtime": runtime}
    )
    assert out == {"steered": "200", "folded": "400", "folded_tab": "400", "chunked": "411",
                   "twice": "400"}  # fmt: skip
    assert len(upstream.requests) == 1
    got = {k.lower() for k, _ in upstream.requests[0]["headers"]}
    assert "x-benign" in got
    assert got & {k.lower() for k in STEERING} == set()
    assert measured(result)["gateway.llm.status.400"] == 3


def test_a_flood_leaves_the_hosts_process_flat(tmp_path: Path, sandbox: Any, runtime: str) -> None:
    """2000 connections that each declare 8 MiB and send 256 KiB, and 8 that send 40 MiB, from
    one experiment: the orchestrator's threads, descriptors and memory stay within a bound."""
    got = flood(tmp_path, sandbox, runtime)
    before, peak, after, probe = got["before"], got["peak"], got["after"], got["probe"]
    assert probe["opened"] >= 100, probe  # more than are served at once: the rest queued
    assert peak.threads - before.threads <= 40, (before, peak)
    assert peak.fds - before.fds <= 100, (before, peak)
    assert peak.rss_mib - before.rss_mib <= (BIG_BODY + 64 * 1024**2) / 2**20, (before, peak)
    assert after.threads <= before.threads + 4 and after.fds <= before.fds + 16, (before, after)
    assert probe["after"] == 200  # the flood over, the service answers again
