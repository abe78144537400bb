"""The gateway: named services reached from a network-none sandbox, keys that stay on the host.

Real Docker engine, real unix sockets, loopback only: every upstream here is a fake on
127.0.0.1. Each container test runs one attempt (`perform`) of a tiny repository whose
trusted evaluator probes the service and prints one `RESULT {json}` line.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents.config import DEFAULT_PRICES
from orchestrator.contract.load import build_contract
from orchestrator.contract.metrics import measured
from orchestrator.errors import ContractError, UserError
from orchestrator.executors.attempt import Attempt, Trusted, perform
from orchestrator.executors.workdirs import Workdirs
from orchestrator.gateway.server import check_environment, serving
from orchestrator.harness.autoresearch_harness import services as forwarder
from orchestrator.sandbox import ContainerResult
from tests.conftest import make_repo
from tests.fake_anthropic import FakeAnthropic, text

KEY = "sk-ant-test-" + secrets.token_hex(12)
USAGE = {"input_tokens": 11, "output_tokens": 5, "cache_read_input_tokens": 2}
MODEL = "claude-haiku-4-5"


class Upstream:
    """A fake upstream on 127.0.0.1: records every request, answers a Messages-shaped JSON that
    echoes what it was sent (header names, path, body) — never a header's value."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        up = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                up.requests.append(
                    {"method": self.command, "path": self.path, "headers": self.headers.items(), "body": body}
                )  # fmt: skip
                data = json.dumps(
                    {"type": "message", "model": MODEL, "usage": USAGE,
                     "content": [{"type": "text", "text": f"{self.command} {self.path}"}],
                     "echo": {"headers": [k for k, _ in self.headers.items()], "body": body.decode()}}
                ).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the gateway forwards up to 16 at once: none is reset

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = Upstream(), Upstream()
    yield a, b
    for u in (a, b):
        u.server.shutdown()
        u.server.server_close()


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KEY", KEY)


def llm(url: str, **over: Any) -> dict[str, Any]:
    return {
        "name": "llm",
        "upstream": url,
        "headers": {"x-api-key": "GATEWAY_TEST_KEY"},
        "paths": ["/v1/messages"],
        **over,
    }


PROBE = """
import json, os, socket, urllib.error, urllib.request

URL = os.environ["AUTORESEARCH_SERVICE_LLM_URL"]


def call(method, path, headers=None, body=b"{}"):
    req = urllib.request.Request(URL + path, data=None if method == "GET" else body,
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]


def raw(request):
    host, port = URL.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request.encode())
        return s.makefile("rb").readline().decode().split()[1]


out = {}
"""


def run(
    tmp_path: Path,
    sandbox: Any,
    script: str,
    services: list[dict[str, Any]],
    **over: Any,
) -> tuple[ContainerResult, dict[str, Any]]:
    """One attempt of a repository whose evaluator is `script` (PROBE first); its RESULT line."""
    code = PROBE + textwrap.dedent(script) + '\nprint("RESULT " + json.dumps(out))\n'
    repo = make_repo(tmp_path / "repo", {"impl.py": "X = 1\n", "probe.py": code})
    contract = build_contract(
        {
            "implementation": {"paths": ["impl.py"]},
            "evaluator": {"command": "python probe.py", "paths": ["probe.py"]},
            "metric": {"name": "x", "goal": "min"},
            "budget": {"seconds": 60},
            "sandbox": {"memory": "256m", "pids": 64, "services": services},
        },
        over,
        "test",
    )
    tree = subprocess.run(
        ["git", "-C", str(repo), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    attempt = Attempt(0, tree, contract, env={"HOME": "/tmp", "AUTORESEARCH_SEED": "1"})
    workdirs = Workdirs(tmp_path / "box", lambda _f, e: None, ahead=False)
    try:
        result = perform(attempt, sandbox, workdirs, Trusted(repo, repo, repo))
    finally:
        workdirs.close()
    line = next((ln for ln in result.output.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, result.output
    return result, json.loads(line.removeprefix("RESULT "))


def test_an_evaluator_reaches_its_service_and_nothing_else(
    tmp_path: Path, sandbox: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    a, b = upstreams
    other = {"name": "other", "upstream": b.url, "paths": ["/b"], "methods": ["GET", "POST"]}
    script = f"""
    out["ok"] = call("POST", "/v1/messages", {{"x-api-key": "forged", "authorization": "Bearer forged",
                                             "cookie": "s=forged", "content-type": "application/json"}})
    out["host"] = call("POST", "/v1/messages/count_tokens", {{"host": "127.0.0.1:{b.port}"}})
    out["get"] = call("GET", "/v1/messages")
    out["delete"] = call("DELETE", "/v1/messages")
    out["path"] = call("POST", "/v1/admin")
    out["prefix"] = call("POST", "/v1/messagesX")
    out["dots"] = call("POST", "/v1/messages/../admin")
    out["encoded"] = call("POST", "/v1/messages/%2e%2e/admin")
    out["other_service"] = call("POST", "/b")
    out["absolute"] = raw("POST http://127.0.0.1:{b.port}/b HTTP/1.1\\r\\nhost: x\\r\\ncontent-length: 0\\r\\n\\r\\n")
    try:
        socket.create_connection(("127.0.0.1", {a.port}), timeout=2)
        out["host_port"] = "connected"
    except OSError as e:
        out["host_port"] = type(e).__name__
    out["sockets"] = sorted(os.listdir("/services"))
    out["other_url"] = "AUTORESEARCH_SERVICE_OTHER_URL" in os.environ
    """
    paths = ["/v1/messages", "/v1/messages/count_tokens"]
    result, out = run(tmp_path, sandbox, script, [llm(a.url, paths=paths), other])
    assert (
        out["ok"][0] == 200
        and json.loads(out["ok"][1])["content"][0]["text"] == "POST /v1/messages"
    )
    assert out["host"][0] == 200  # a Host header steers nothing: it reached llm's upstream
    statuses = {
        k: out[k][0]
        for k in ("get", "delete", "path", "prefix", "dots", "encoded", "other_service")
    }
    assert statuses == {"get": 405, "delete": 405, "path": 403, "prefix": 403, "dots": 403,
                        "encoded": 403, "other_service": 403}  # fmt: skip
    assert out["absolute"] == "403"
    assert out["host_port"] == "ConnectionRefusedError"  # the host's loopback is not the sandbox's
    assert out["sockets"] == ["llm", "other"] and out["other_url"]
    assert [r["path"] for r in a.requests] == ["/v1/messages", "/v1/messages/count_tokens"]
    assert b.requests == []  # nothing sent through llm's URL reached the other service
    for r in a.requests:  # the key added on the host; every credential of the container's dropped
        headers = [(k.lower(), v) for k, v in r["headers"]]
        assert [v for k, v in headers if k == "x-api-key"] == [KEY]
        assert not {"authorization", "cookie"} & {k for k, _ in headers}
        assert dict(headers)["host"] == f"127.0.0.1:{a.port}"
    m = measured(result)
    assert m["gateway.llm.requests"] == 2 and m["gateway.llm.refused"] == 8
    assert m["gateway.llm.status.403"] == 6 and m["gateway.llm.status.405"] == 2
    assert m["gateway.other.requests"] == 0


def test_the_key_never_enters_the_container(
    tmp_path: Path, sandbox: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    script = f"""
    import glob
    import autoresearch_harness as harness
    KEY = bytes.fromhex("{KEY.encode().hex()}")  # never written out whole in this file
    seen = []
    body = call("POST", "/v1/messages", {{"content-type": "application/json"}}, b'{{"model":"m"}}')[1]
    if KEY in body.encode():
        seen.append("the answer")
    if any(KEY in v.encode() for v in os.environ.values()):
        seen.append("environment")
    for root in ("/services", "/workspace", "/trusted", "/tmp", "/trusted-tmp", "/results", "/harness", "/etc"):
        for path in glob.glob(root + "/**", recursive=True):
            try:
                with open(path, "rb") as f:
                    if KEY in f.read():
                        seen.append(path)
            except OSError:
                pass
    for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                if KEY in f.read():
                    seen.append(path)
        except OSError:
            pass
    cand = harness.run(["sh", "-c", "env; cat /proc/*/environ /proc/*/cmdline 2>/dev/null"], timeout=20)
    if KEY.decode() in cand["stdout"]:
        seen.append("the candidate's side")
    out["seen"] = seen
    """
    result, out = run(tmp_path, sandbox, script, [llm(upstreams[0].url)])
    assert out["seen"] == [], out
    assert KEY not in result.output and KEY not in (result.candidate_output or "")
    assert [v for k, v in upstreams[0].requests[0]["headers"] if k.lower() == "x-api-key"] == [KEY]


def test_caps_are_exact_and_token_figures_too(
    tmp_path: Path, sandbox: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    a, b = upstreams
    counted = llm(b.url, name="claude", kind="anthropic", max_tokens=30)
    script = """
    URLS = {"llm": URL, "claude": os.environ["AUTORESEARCH_SERVICE_CLAUDE_URL"]}
    out["requests"] = [call("POST", "/v1/messages") for _ in range(5)]
    URL = URLS["claude"]
    out["tokens"] = [call("POST", "/v1/messages", body=b'{"model": "claude-haiku-4-5"}') for _ in range(3)]
    """
    result, out = run(tmp_path, sandbox, script, [llm(a.url, max_requests=3), counted])
    assert [s for s, _ in out["requests"]] == [200, 200, 200, 429, 429]
    refusal = json.loads(out["requests"][3][1])
    assert (
        refusal["error"]["type"] == "gateway_cap_reached"
        and "max_requests = 3" in refusal["error"]["message"]
    )
    assert [s for s, _ in out["tokens"]] == [200, 200, 429]  # 18 tokens, then 36 >= 30: refused
    assert len(a.requests) == 3 and len(b.requests) == 2
    m = measured(result)
    assert m["gateway.llm.requests"] == 3 and m["gateway.llm.refused"] == 2
    assert m["gateway.llm.status.200"] == 3 and m["gateway.llm.status.429"] == 2
    assert (m["gateway.claude.input_tokens"], m["gateway.claude.output_tokens"]) == (26, 10)
    assert m["gateway.claude.tokens"] == 36
    p = DEFAULT_PRICES[MODEL]
    assert m["gateway.claude.usd"] == pytest.approx(
        2 * (11 * p.input + 2 * p.cache_read + 5 * p.output) / 1e6
    )
    assert "gateway.llm.tokens" not in m  # an http service counts no tokens
    sent = sum(len(r["body"]) for r in b.requests)
    assert m["gateway.claude.bytes_sent"] == sent


def test_shared_mode_reaches_the_service_too(
    tmp_path: Path, sandbox: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    result, out = run(
        tmp_path, sandbox, 'out["ok"] = call("POST", "/v1/messages")[0]', [llm(upstreams[0].url)],
        **{"evaluator.isolation": "shared"},
    )  # fmt: skip
    assert out["ok"] == 200 and measured(result)["gateway.llm.requests"] == 1


def _runsc_uds(docker_client: Any) -> bool:
    runsc = (docker_client.info().get("Runtimes") or {}).get("runsc") or {}
    return any("host-uds" in a and not a.endswith("none") for a in runsc.get("runtimeArgs", []))


def test_under_runsc_the_service_is_reached(
    tmp_path: Path, sandbox: Any, docker_client: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    if not _runsc_uds(docker_client):
        pytest.skip(
            "runsc is not registered with --host-uds=open on this engine (scripts/ensure-runsc)"
        )
    result, out = run(
        tmp_path, sandbox, 'out["ok"] = call("POST", "/v1/messages")[0]', [llm(upstreams[0].url)],
        **{"sandbox.runtime": "runsc"},
    )  # fmt: skip
    assert out["ok"] == 200 and measured(result)["gateway.llm.requests"] == 1


# -- without Docker: the real SDK through the forwarder and the gateway, and the contract ---------
@pytest.fixture
def through_gateway(tmp_path: Path) -> Iterator[Any]:
    """through(services) -> {name: loopback URL}: the gateway and the harness's forwarder, on the host."""
    stack: list[Any] = []

    def through(services: list[dict[str, Any]]) -> tuple[Any, dict[str, str]]:
        c = build_contract(
            {"implementation": {"paths": ["a"]}, "evaluator": {"command": "x"},
             "metric": {"name": "x", "goal": "min"}, "sandbox": {"services": services}}, {}, "test"
        )  # fmt: skip
        cm = serving(c.sandbox.services, 30)
        gateway = cm.__enter__()
        stack.append(cm)
        assert gateway.folder is not None
        listeners, urls = {}, {}
        for s in c.sandbox.services:
            lsock = socket.socket()
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(16)
            listeners[lsock] = str(gateway.folder / "s" / s.name)
            urls[s.name] = f"http://127.0.0.1:{lsock.getsockname()[1]}"
        threading.Thread(target=forwarder.serve, args=(listeners,), daemon=True).start()
        return gateway, urls

    yield through
    for cm in stack:
        cm.__exit__(None, None, None)


def test_the_real_sdk_streams_through_and_its_tokens_are_counted(through_gateway: Any) -> None:
    anthropic = pytest.importorskip("anthropic")
    with FakeAnthropic(MODEL) as fake:
        for _ in range(3):
            fake.message(
                text("hi"),
                usage={"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 50},
            )
        gateway, urls = through_gateway([llm(fake.base_url, kind="anthropic", max_requests=2)])
        client = anthropic.Anthropic(base_url=urls["llm"], api_key="placeholder", max_retries=3)
        for _ in range(2):
            with client.messages.stream(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
            ) as s:
                assert s.get_final_text() == "hi"
        with pytest.raises(anthropic.RateLimitError, match="max_requests = 2"):
            client.messages.create(
                model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}]
            )
        assert len(fake.requests) == 2  # the 429 was not retried (x-should-retry: false)
    gateway_figures = gateway.tallies["llm"].metrics()
    assert gateway_figures["gateway.llm.input_tokens"] == 2 * 1050
    assert gateway_figures["gateway.llm.output_tokens"] == 2 * 100
    p = DEFAULT_PRICES[MODEL]
    usd = 2 * (1000 * p.input + 50 * p.cache_read + 100 * p.output) / 1e6
    assert gateway_figures["gateway.llm.usd"] == pytest.approx(usd)


def test_max_bytes_refuses_a_body_past_it(
    through_gateway: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    import urllib.error
    import urllib.request

    gateway, urls = through_gateway([llm(upstreams[0].url, max_bytes=1000)])
    request = urllib.request.Request(urls["llm"] + "/v1/messages", data=b"x" * 1001, method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 429 and upstreams[0].requests == []
    assert gateway.tallies["llm"].refused == 1
    t0 = time.monotonic()
    ok = urllib.request.Request(urls["llm"] + "/v1/messages", data=b"x" * 10, method="POST")
    assert urllib.request.urlopen(ok, timeout=10).status == 200
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    ("service", "why"),
    [
        ({"name": "LLM"}, "String should match pattern"),
        ({"upstream": "ftp://example.invalid"}, "not an http(s) base URL"),
        ({"upstream": "https://user:pw@example.invalid"}, "holds credentials"),
        (
            {"headers": {"x-api-key": "sk-ant-literal-secret"}},
            "must name a host environment variable",
        ),
        ({"paths": ["/v1/../admin"]}, "plain absolute path"),
        ({"methods": ["BREW"]}, "is not one of"),
        ({"max_tokens": 10}, "need kind = 'anthropic'"),
    ],
)
def test_a_bad_service_is_one_clear_error(service: dict[str, Any], why: str) -> None:
    data = {"implementation": {"paths": ["a"]}, "evaluator": {"command": "x"},
            "metric": {"name": "x", "goal": "min"},
            "sandbox": {"services": [llm("http://127.0.0.1:1", **service)]}}  # fmt: skip
    with pytest.raises(ContractError, match=r"sandbox\.services") as e:
        build_contract(data, {}, "c.toml")
    assert why in e.value.message


def test_a_missing_key_is_named_at_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_TEST_KEY")
    data = {"implementation": {"paths": ["a"]}, "evaluator": {"command": "x"},
            "metric": {"name": "x", "goal": "min"},
            "sandbox": {"services": [llm("http://127.0.0.1:1")]}}  # fmt: skip
    c = build_contract(data, {}, "c.toml")
    with pytest.raises(
        UserError, match=r"GATEWAY_TEST_KEY \(service llm, header x-api-key\) is not set"
    ):
        check_environment(c.sandbox.services)


def test_a_printed_gateway_figure_is_ignored() -> None:
    forged = ContainerResult(0, False, False, 1.0, None, None, "gateway.llm.tokens: 1\nx: 2\n")
    assert "gateway.llm.tokens" not in measured(forged)
    real = ContainerResult(
        0,
        False,
        False,
        1.0,
        None,
        None,
        "gateway.llm.tokens: 1\n",
        gateway={"gateway.llm.tokens": 9.0},
    )
    assert measured(real)["gateway.llm.tokens"] == 9.0


def test_many_requests_at_once_all_get_through(
    through_gateway: Any, upstreams: tuple[Upstream, Upstream]
) -> None:
    """A full unix backlog refuses a connect at once: the forwarder waits it out, none fail."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    _gateway, urls = through_gateway([llm(upstreams[0].url)])

    def one(_: int) -> int:
        req = urllib.request.Request(urls["llm"] + "/v1/messages", data=b"{}", method="POST")
        with urllib.request.urlopen(req, timeout=20) as answer:
            return int(answer.status)

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert list(pool.map(one, range(200))) == [200] * 200
    assert len(upstreams[0].requests) == 200
