"""The command agent's CLI in a container of its own, its LLM API only through the gateway.

Real engine, real unix sockets, loopback only: the Messages API is the fake on
127.0.0.1 (tests/fake_anthropic.py), the gateway adds the key on the host. The fake
CLI is Python, so the cheap sandbox image stands in for the agent image (Node and
Claude Code), which `make agent-image` builds.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.agents import Context
from orchestrator.agents.command import ON_HOST_WARNING, CommandAgent
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.container import PLACEHOLDER_KEY, ROLE_LABEL
from orchestrator.errors import Cancelled, InfraError, UserError
from tests.conftest import IMPL, contract_for, git, our_containers
from tests.fake_anthropic import FakeAnthropic, text

KEY = "sk-ant-agent-test-" + secrets.token_hex(12)
IMAGE = "autoresearch/python:3.11"

FAKE_CLI = """
import glob, json, os, socket, sys, urllib.request
prompt = open(sys.argv[1]).read()
assert "# Direction" in prompt and "OFFSET = 10.0" in prompt, prompt[:300]
body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True,
                   "messages": [{"role": "user", "content": prompt}]}).encode()
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=body,
                             headers={"content-type": "application/json",
                                      "x-api-key": os.environ["ANTHROPIC_API_KEY"]})
answer = ""
with urllib.request.urlopen(req, timeout=20) as r:
    for line in r.read().decode().splitlines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event["type"] == "content_block_delta":
                answer += event["delta"]["text"]
old, new = answer.split(" -> ")


def reach(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
        return "connected"
    except OSError as e:
        return type(e).__name__


seen = []  # every process's environment and command line, as the CLI could read them
for proc in glob.glob("/proc/[0-9]*"):
    for name in ("environ", "cmdline"):
        try:
            seen.append(open(proc + "/" + name, "rb").read().decode(errors="replace"))
        except OSError:
            pass
probe = {"key": os.environ["ANTHROPIC_API_KEY"], "host_port": reach(int(sys.argv[2])),
         "seen": seen, "prompt": os.environ["AUTORESEARCH_PROMPT"]}
impl = open("impl.py").read().replace(old, new)
open("impl.py", "w").write(impl + "# probe " + json.dumps(probe) + "\\n")
print("DESCRIPTION: the offset the model chose")
print("HYPOTHESIS: the score is the offset")
"""


def _agent(base_url: str, **over: Any) -> dict[str, Any]:
    return {"kind": "command", "image": IMAGE, "base_url": base_url, "key_env": "AGENT_TEST_KEY",
            "timeout_s": 60, "memory": "512m", **over}  # fmt: skip


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_KEY", KEY)


def test_a_cli_in_its_container_edits_through_the_gateway_and_is_kept(
    repo: Path, start: Any
) -> None:
    (repo / "agent_cli.py").write_text(FAKE_CLI)
    git(repo, "add", "agent_cli.py")
    git(repo, "commit", "-qm", "the fake CLI")
    with FakeAnthropic("claude-haiku-4-5") as api:
        api.message(text("OFFSET = 10.0 -> OFFSET = 1.5"))
        port = api.server.server_address[1]
        command = f"python3 agent_cli.py {{prompt_file}} {port}"
        run = start(contract_for(Path("x"), agent=_agent(api.base_url, command=command),
                                 **{"budget.max_experiments": 1}))  # fmt: skip
        run.execute()
    e = run.ledger.get(1)
    assert e is not None and e.status == "keep", (e.status, e.reason)
    assert e.description == "the offset the model chose"
    merged = git(repo, "show", "autoresearch/t:impl.py")
    assert merged.startswith(IMPL.replace("10.0", "1.5"))
    probe = json.loads(merged.split("# probe ", 1)[1])
    assert probe["key"] == PLACEHOLDER_KEY and probe["prompt"] == "/agent/prompt.md"
    assert probe["host_port"] == "ConnectionRefusedError"  # the host's port is not there
    assert len(probe["seen"]) >= 4 and not any(KEY in s for s in probe["seen"])
    assert KEY not in merged
    assert api.headers[0]["x-api-key"] == KEY  # added by the gateway, on the host
    assert our_containers(run.executor.sandbox.client, **{ROLE_LABEL: "agent"}) == []


def _ctx(contract: Any) -> Context:
    return Context(experiment=1, contract=contract, direction="# d", best_commit="0" * 40)


def _scratch(tmp_path: Path) -> Path:
    scratch = tmp_path / "scratch"
    scratch.mkdir(parents=True)
    (scratch / "impl.py").write_text(IMPL)
    return scratch


def test_the_clis_own_failure_is_the_infrastructures_and_a_missing_cli_the_setups(
    tmp_path: Path,
) -> None:
    contract = contract_for(Path("x"))
    crash = CommandAgent(
        CommandAgentConfig(**_agent("http://127.0.0.1:9", command="echo API down; exit 3"))
    )
    with pytest.raises(InfraError, match="exited 3: API down"):
        crash.propose(_ctx(contract), _scratch(tmp_path))
    missing = CommandAgent(
        CommandAgentConfig(**_agent("http://127.0.0.1:9", command="no-such-cli-xyz"))
    )
    with pytest.raises(UserError, match=r"cannot run \(exit 127"):
        missing.propose(_ctx(contract), _scratch(tmp_path / "b"))


def _running(sandbox: Any, what: str) -> bool:
    """Whether an agent container runs a process whose command line is `what`."""
    for c in our_containers(sandbox.client, **{ROLE_LABEL: "agent"}):
        with contextlib.suppress(docker.errors.APIError):
            if any(p[-1] == what for p in c.top()["Processes"]):  # type: ignore[attr-defined]
                return True
    return False


def test_cancel_kills_the_container_and_on_host_says_so(tmp_path: Path, sandbox: Any) -> None:
    agent = CommandAgent(CommandAgentConfig(**_agent("http://127.0.0.1:9", command="sleep 60")))
    failed: list[BaseException] = []

    def propose() -> None:
        try:
            agent.propose(_ctx(contract_for(Path("x"))), _scratch(tmp_path))
        except BaseException as e:  # what the thread ended with
            failed.append(e)

    thread = threading.Thread(target=propose)
    thread.start()
    deadline = time.monotonic() + 20
    while not _running(sandbox, "sleep 60"):  # the proposal's, not one made ahead at its gate
        assert time.monotonic() < deadline, "the agent's container never started"
        time.sleep(0.1)
    t0 = time.monotonic()
    agent.cancel()
    thread.join(15)
    assert not thread.is_alive() and time.monotonic() - t0 < 10
    assert failed and isinstance(failed[0], InfraError)
    assert agent._container is not None
    agent._container.seats._background.join(30)  # one being made ahead is removed once made
    assert our_containers(sandbox.client, **{ROLE_LABEL: "agent"}) == []
    said: list[str] = []
    CommandAgent(CommandAgentConfig(command="true", on_host=True), say=said.append)
    assert said == [ON_HOST_WARNING]


@pytest.mark.parametrize("on_host", [False, True])
def test_a_proposal_that_reaches_its_agent_after_the_cancel_starts_nothing(
    tmp_path: Path, sandbox: Any, on_host: bool
) -> None:
    """The teardown may come between a proposer's last look at the night and its agent's start:
    the agent then starts no container and no process (none would be killed, and the night
    would wait for it or leave it spending), and says it was cancelled."""
    marker = tmp_path / "ran"
    command = f"touch {marker}; sleep 60" if on_host else "sleep 60"
    agent = CommandAgent(CommandAgentConfig(**_agent("http://127.0.0.1:9", command=command),
                                            on_host=on_host))  # fmt: skip
    agent.cancel()  # the night is torn down
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        agent.propose(_ctx(contract_for(Path("x"))), _scratch(tmp_path))
    assert time.monotonic() - t0 < 10
    time.sleep(1)
    assert not marker.exists() and not _running(sandbox, "sleep 60")
    if agent._container is not None:
        agent._container.seats._background.join(30)
        assert our_containers(sandbox.client, **{ROLE_LABEL: "agent"}) == []  # none made ahead


def test_the_next_proposal_runs_in_a_container_made_ahead_with_its_own_copy_and_prompt(
    tmp_path: Path,
) -> None:
    """While one proposal runs, the next one's container is made and waits at its gate; the
    next proposal's copy, prompt and variables are its own, and its gateway counts its call."""
    from tests.bench_proposers import ASK

    gate = "NOTE: made ahead $(tr '\\0' ' ' </proc/1/cmdline | grep -c _autoresearch_\"\"go)"
    command = (f'{ASK}; echo "# by $AUTORESEARCH_EXPERIMENT" >> impl.py; echo "{gate}"; '
               'echo "NOTE: asked $(grep -c "Direction" "$AUTORESEARCH_PROMPT")"; echo DESCRIPTION: d')  # fmt: skip
    contract = contract_for(Path("x"))
    with FakeAnthropic() as api:
        for _ in range(2):
            api.message(text("an idea"))
        agent = CommandAgent(CommandAgentConfig(**_agent(api.base_url, command=command)))
        assert agent._container is not None
        seats = agent._container.seats
        made = []
        for n in (1, 2):
            scratch = _scratch(tmp_path / str(n))
            ctx = Context(experiment=n, contract=contract, direction="# Direction", best_commit="0" * 40)  # fmt: skip
            made.append((agent.propose(ctx, scratch), (scratch / "impl.py").read_text()))
            deadline = time.monotonic() + 30
            while not seats._ready:  # the next one's container, made while this one ran
                assert time.monotonic() < deadline, "no container was made ahead"
                time.sleep(0.1)
    (first, first_impl), (second, second_impl) = made
    assert first is not None and second is not None
    assert first.notes[0] == "made ahead 0"  # the first in a fresh container
    assert second.notes[0] == "made ahead 1"  # the second behind the gate, let go
    assert first.notes[1] != "asked 0" and second.notes[1] != "asked 0"  # each read its prompt
    assert first_impl == IMPL + "# by 1\n" and second_impl == IMPL + "# by 2\n"
    assert second.usage and second.cost_usd  # its call went through the sockets made ahead
    ready = list(seats._ready)
    folders = [p for s in ready for p in (s.held.parent, *s.held.beside)]
    assert ready and len(folders) == 2 * len(ready)  # its copy's, and its gateway's sockets
    agent.cancel()  # as the night's end does
    seats._background.join(30)
    assert not any(p.exists() for p in folders)  # nothing made ahead is left behind
    assert our_containers(agent._container.client, **{ROLE_LABEL: "agent"}) == []
