"""The command agent's ways out: an OpenAI-compatible API, a plain HTTP service, or none at all.

Real engine, real gateway, loopback only: the upstreams are fakes on 127.0.0.1
(tests/fake_openai.py, a plain http.server). The fake CLI is Python, so the cheap
sandbox image stands in for the agent image.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents import Context
from orchestrator.agents.command import CommandAgent
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.services import PLACEHOLDER_KEYS, refused_key
from orchestrator.contract.services import Service
from orchestrator.errors import UserError
from orchestrator.gateway.openai import OpenAIUsageReader, reader_for
from orchestrator.gateway.usage import UsageReader
from tests.conftest import IMPL, contract_for, git
from tests.fake_openai import FakeOpenAI, message

KEY = "sk-proj-agent-test-" + secrets.token_hex(12)
IMAGE = "autoresearch/python:3.11"

OPENAI_CLI = """
import json, os, sys, urllib.request
prompt = sys.stdin.read()  # the prompt comes on stdin: the command names no {prompt_file}
assert "# Direction" in prompt and "OFFSET = 10.0" in prompt, prompt[:300]
base = os.environ["OPENAI_BASE_URL"]


def post(path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={
        "content-type": "application/json", "authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.read().decode()


answer = ""
for line in post("/responses", {"model": "gpt-5-mini", "input": prompt, "stream": True}).splitlines():
    if line.startswith("data: "):
        event = json.loads(line[6:])
        if event["type"] == "response.output_text.delta":
            answer += event["delta"]
old, new = answer.split(" -> ")
chat = post("/chat/completions", {"model": "gpt-5-mini", "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "why?"}]})
why = "".join(json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
              for ln in chat.splitlines() if ln.startswith("data: {") and json.loads(ln[6:])["choices"])
probe = {"key": os.environ["OPENAI_API_KEY"], "base": base,
         "anthropic": os.environ.get("ANTHROPIC_API_KEY")}
impl = open("impl.py").read().replace(old, new)
open("impl.py", "w").write(impl + "# probe " + json.dumps(probe) + "\\n")
print("DESCRIPTION: the offset the model chose")
print("HYPOTHESIS: " + why)
"""


@pytest.fixture(autouse=True)
def no_host_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the keys a test sets: a key is needed for a declared service only."""
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def _agent(**over: Any) -> dict[str, Any]:
    return {"kind": "command", "image": IMAGE, "timeout_s": 60, "memory": "512m", **over}


def test_an_openai_cli_edits_through_the_gateway_and_its_tokens_are_counted(
    repo: Path, start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_OPENAI_KEY", KEY)
    (repo / "agent_cli.py").write_text(OPENAI_CLI)
    git(repo, "add", "agent_cli.py")
    git(repo, "commit", "-qm", "the fake CLI")
    with FakeOpenAI("gpt-5-mini") as api:
        api.answer(message("OFFSET = 10.0 -> OFFSET = 1.5"), 1200, 80, cached=200)
        api.answer(message("the score is the offset"), 900, 50, cached=0)
        service = {"kind": "openai", "upstream": api.base_url,
                   "headers": {"authorization": "AGENT_OPENAI_KEY"}}  # fmt: skip
        agent = _agent(command="python3 agent_cli.py", services=[service])
        run = start(contract_for(Path("x"), agent=agent, **{"budget.max_experiments": 1}))
        run.execute()
    e = run.ledger.get(1)
    assert e is not None and e.status == "keep", (e.status, e.reason)
    assert e.hypothesis == "the score is the offset"
    merged = git(repo, "show", "autoresearch/t:impl.py")
    assert merged.startswith(IMPL.replace("10.0", "1.5"))
    probe = json.loads(merged.split("# probe ", 1)[1])
    assert probe["key"] == PLACEHOLDER_KEYS["openai"][1] and probe["anthropic"] is None
    assert probe["base"].startswith("http://127.0.0.1:") and probe["base"].endswith("/v1")
    assert api.paths == ["/v1/responses", "/v1/chat/completions"]
    assert all(h["authorization"] == f"Bearer {KEY}" for h in api.headers)  # added on the host
    assert KEY not in merged
    assert e.usage == {"input": 2100, "output": 130}, (
        "no tokens counted: plug orchestrator/gateway/openai.py's reader_for into the gateway"
    )
    usd = (1000 * 0.25 + 200 * 0.025 + 80 * 2 + 900 * 0.25 + 50 * 2) / 1e6  # gpt-5-mini
    assert e.cost_usd == pytest.approx(usd)


LOCAL_CLI = """
import os, urllib.request
with urllib.request.urlopen(os.environ["AUTORESEARCH_SERVICE_LOCAL_URL"] + "/api/offset", timeout=20) as r:
    offset = r.read().decode().strip()
impl = open("impl.py").read().replace("10.0", offset)
open("impl.py", "w").write(impl)
print("DESCRIPTION: the local model's offset", sorted(k for k in os.environ if k.endswith("_API_KEY")))
"""


class _LocalModel:
    """A plain HTTP server on the host's loopback: a local model server, no key."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        seen = self.paths

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("content-length", "4")
                self.end_headers()
                self.wfile.write(b"2.5\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _propose(agent: CommandAgent, tmp_path: Path) -> tuple[Any, str]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(parents=True)
    (scratch / "impl.py").write_text(IMPL)
    (scratch / "agent_cli.py").write_text(LOCAL_CLI)
    ctx = Context(experiment=1, contract=contract_for(Path("x")), direction="# d", best_commit="0")
    proposal = agent.propose(ctx, scratch)
    return proposal, (scratch / "impl.py").read_text()


def test_a_plain_http_service_needs_no_key_and_no_service_means_no_way_out(
    tmp_path: Path,
) -> None:
    local = _LocalModel()
    try:
        svc = {"kind": "http", "name": "local", "upstream": local.url, "paths": ["/api/offset"],
               "methods": ["GET"]}  # fmt: skip
        agent = CommandAgent(CommandAgentConfig(**_agent(command="python3 agent_cli.py",
                                                         services=[svc])))  # fmt: skip
        proposal, impl = _propose(agent, tmp_path / "http")
    finally:
        local.server.shutdown()
        local.server.server_close()
    assert impl == IMPL.replace("10.0", "2.5") and local.paths == ["/api/offset"]
    assert proposal.description == "the local model's offset []"  # no placeholder key either
    assert proposal.cost_usd is None and proposal.usage == {}  # nothing that counts tokens

    offline = (
        'test -z "$AUTORESEARCH_SERVICES" && ! env | grep -q _API_KEY && sed -i s/10/3/ impl.py'
    )
    agent = CommandAgent(CommandAgentConfig(**_agent(command=offline, services=[])))
    proposal, impl = _propose(agent, tmp_path / "none")
    assert impl == IMPL.replace("10.0", "3.0")  # no service, no key: and it ran


def test_a_key_is_needed_only_for_a_service_declared() -> None:
    openai = CommandAgentConfig(**_agent(command="true", services=[{"kind": "openai"}]))
    with pytest.raises(UserError, match=r"OPENAI_API_KEY \(service openai, header authorization"):
        CommandAgent(openai)
    with pytest.raises(UserError, match=r"ANTHROPIC_API_KEY \(service llm, header x-api-key"):
        CommandAgent(CommandAgentConfig(**_agent(command="claude -p")))  # the default: Claude Code
    CommandAgent(CommandAgentConfig(**_agent(command="true", services=[])))
    with pytest.raises(ValueError, match="base_url: only for the default llm service"):
        CommandAgentConfig(**_agent(command="x", base_url="http://x", services=[]))
    with pytest.raises(ValueError, match=r"services\[0\].name: Field required"):
        CommandAgentConfig(**_agent(command="x", services=[{"kind": "http", "upstream": "http://x",
                                                            "paths": ["/a"]}]))  # fmt: skip


def test_a_key_the_upstream_refused_is_told_from_the_gateways_own_refusals() -> None:
    svc = Service(name="llm", kind="anthropic", upstream="http://x", paths=["/v1/messages"],
                  headers={"x-api-key": "MY_KEY"})  # fmt: skip
    g = "gateway.llm."
    assert "refused the key in MY_KEY (HTTP 401)" in str(refused_key([svc], {g + "status.401": 1}))
    # a 403 the gateway gave itself (a path it does not let through) is not the key's
    assert refused_key([svc], {g + "status.403": 2, g + "refused": 2, g + "status.200": 0}) is None
    assert "(HTTP 403)" in str(refused_key([svc], {g + "status.403": 1, g + "refused": 0}))
    # a 403 beside answers that passed: a model the key may not use, not a refused key
    assert refused_key([svc], {g + "status.403": 1, g + "status.200": 3}) is None


RESPONSES_SSE = b"""event: response.created
data: {"type":"response.created","response":{"id":"r1","model":"gpt-5","usage":null}}

event: response.completed
data: {"type":"response.completed","response":{"id":"r1","model":"gpt-5","usage":{"input_tokens":500,"input_tokens_details":{"cached_tokens":100},"output_tokens":40}}}

"""
CHAT_SSE = b"""data: {"model":"gpt-4.1","choices":[{"delta":{"content":"hi"}}],"usage":null}

data: {"model":"gpt-4.1","choices":[],"usage":{"prompt_tokens":70,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":64}}}

data: [DONE]

"""


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_openai_usage_is_read_from_either_api_streamed_or_whole(chunk: int) -> None:
    def read(content_type: str, body: bytes) -> tuple[int, int, int, str | None]:
        reader = OpenAIUsageReader(content_type)
        for i in range(0, len(body), chunk):
            reader.feed(body[i : i + chunk])
        u = reader.usage()
        return u.input_tokens, u.output_tokens, u.cache_read, u.model

    assert read("text/event-stream", RESPONSES_SSE) == (500, 40, 100, "gpt-5")
    assert read("text/event-stream; charset=utf-8", CHAT_SSE) == (70, 9, 64, "gpt-4.1")
    whole = {"model": "gpt-5-mini", "usage": {"prompt_tokens": 11, "completion_tokens": 3}}
    assert read("application/json", json.dumps(whole).encode()) == (11, 3, 0, "gpt-5-mini")
    assert read("application/json", b"not json") == (0, 0, 0, None)
    svc = Service(name="o", kind="openai", upstream="http://x", paths=["/v1/responses"])
    assert isinstance(reader_for(svc, "application/json"), OpenAIUsageReader)
    assert isinstance(reader_for(svc.model_copy(update={"kind": "anthropic"}), ""), UsageReader)
