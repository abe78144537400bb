"""Every coding-CLI command form the README documents works as written, whatever the prompt's size.

Each form runs in the agent's container (the real engine, the real gateway) with a fake
CLI of the same name on PATH that takes its prompt and its permission to write the way the
real CLI does (`claude -p` and `codex exec` read stdin when given no prompt argument; aider
reads `--message-file`), asks a fake API on 127.0.0.1 for the change and makes it. The
prompt is over 256 KiB (a 300 KB implementation file): twice the kernel's limit for one
argument, which the `"$(cat {prompt_file})"` form hits — said as the host's limit, not as a
CLI that cannot run. A key the upstream refuses stops the night with one line, after one
request.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents import Context
from orchestrator.agents.command import CommandAgent
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.errors import UserError
from tests.conftest import IMPL, contract_for, git
from tests.fake_anthropic import FakeAnthropic, text
from tests.fake_openai import FakeOpenAI, message

KEY = "sk-agent-forms-" + secrets.token_hex(12)
IMAGE = "autoresearch/python:3.11"
BIG = 300_000
"""Bytes of filler in the implementation file: the prompt passes 256 KiB."""

FORMS = {
    "claude": "claude -p --dangerously-skip-permissions",
    "codex": "codex exec --dangerously-bypass-approvals-and-sandbox",
    "aider": "aider --yes-always --message-file {prompt_file}",
}
"""The README's Agents table, word for word."""

FAKE_CLI = r'''#!/usr/bin/env python3
"""claude, codex or aider, as far as taking a prompt and the right to write go."""
import json, os, sys, urllib.request

name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
flags = [a for a in args if a.startswith("-")]
words = [a for a in args if not a.startswith("-")]
if name == "claude":
    assert "-p" in flags or "--print" in flags, "interactive mode needs a terminal"
    prompt = words[0] if words else sys.stdin.read()
    may_write = "--dangerously-skip-permissions" in flags or "acceptEdits" in words
elif name == "codex":
    assert words[:1] == ["exec"], "codex without exec needs a terminal"
    prompt = words[1] if len(words) > 1 and words[1] != "-" else sys.stdin.read()
    may_write = "--dangerously-bypass-approvals-and-sandbox" in flags or "--full-auto" in flags
else:
    prompt = open(args[args.index("--message-file") + 1]).read()
    may_write = True
assert len(prompt) > 256 * 1024 and "`HYPOTHESIS: <why it should help>`" in prompt, len(prompt)
assert prompt.rstrip().endswith("ruled out and why>`."), prompt[-200:]  # whole, to its end


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        print(f"API Error: {e.code} {e.read().decode()[:200]}")
        sys.exit(1)


msgs = [{"role": "user", "content": prompt}]
if name == "claude":
    out = post(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages",
               {"model": "claude-haiku-4-5", "max_tokens": 64, "stream": True, "messages": msgs},
               {"x-api-key": os.environ["ANTHROPIC_API_KEY"]})
    events = [json.loads(ln[6:]) for ln in out.splitlines() if ln.startswith("data: ")]
    answer = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
else:
    auth = {"authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
    base = os.environ["OPENAI_BASE_URL"]
    if name == "codex":
        out = post(base + "/responses", {"model": "gpt-5-mini", "input": prompt, "stream": True}, auth)
        events = [json.loads(ln[6:]) for ln in out.splitlines() if ln.startswith("data: ")]
        answer = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    else:
        out = post(base + "/chat/completions", {"model": "gpt-5-mini", "messages": msgs}, auth)
        answer = json.loads(out)["choices"][0]["message"]["content"]
old, new = answer.split(" -> ")
if may_write:
    impl = open("impl.py").read().replace(old, new)
    open("impl.py", "w").write(impl)
print(f"DESCRIPTION: {name} set {new}")
print("HYPOTHESIS: the score is the offset")
'''


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def _scratch(tmp_path: Path) -> Path:
    scratch = tmp_path / "scratch"
    (scratch / "bin").mkdir(parents=True)
    (scratch / "impl.py").write_text(IMPL)
    for name in FORMS:
        cli = scratch / "bin" / name
        cli.write_text(FAKE_CLI)
        cli.chmod(cli.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return scratch


def _ctx() -> Context:
    big = IMPL + "# " + "x" * BIG + "\n"
    return Context(experiment=1, contract=contract_for(Path("x")), direction="# Direction",
                   best_commit="0" * 40, files={"impl.py": big})  # fmt: skip


def _config(form: str, url: str, **over: Any) -> CommandAgentConfig:
    path = {"PATH": "/workspace/bin:/usr/local/bin:/usr/bin:/bin"}
    where: dict[str, Any] = {"base_url": url, "key_env": "AGENT_TEST_KEY"}
    if form != "claude":
        where = {"services": [{"kind": "openai", "upstream": url,
                               "headers": {"authorization": "AGENT_TEST_KEY"}}]}  # fmt: skip
    return CommandAgentConfig(kind="command", command=FORMS[form], image=IMAGE, timeout_s=60,
                              memory="512m", env=path, **where, **over)  # fmt: skip


def _api(form: str) -> Any:
    if form == "claude":
        api: Any = FakeAnthropic("claude-haiku-4-5")
        api.message(text("OFFSET = 10.0 -> OFFSET = 1.5"))
    else:
        api = FakeOpenAI("gpt-5-mini")
        api.answer(message("OFFSET = 10.0 -> OFFSET = 1.5"))
    return api


@pytest.mark.parametrize("form", list(FORMS))
def test_each_documented_form_gets_a_prompt_past_the_argument_limit_and_may_write(
    form: str, tmp_path: Path
) -> None:
    scratch = _scratch(tmp_path)
    with _api(form) as api:
        proposal = CommandAgent(_config(form, api.base_url)).propose(_ctx(), scratch)
    assert (scratch / "impl.py").read_text() == IMPL.replace("10.0", "1.5")
    assert proposal.description == f"{form} set OFFSET = 1.5"
    asked = json.dumps(api.requests[0])
    assert len(asked) > 256 * 1024 and "x" * BIG in asked  # the whole prompt reached the API


def test_the_same_form_on_the_host_reads_the_prompt_from_stdin_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = _scratch(tmp_path)
    monkeypatch.setenv("PATH", f"{scratch / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with _api("claude") as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        cfg = _config("claude", api.base_url, on_host=True)
        proposal = CommandAgent(cfg, say=lambda _: None).propose(_ctx(), scratch)
    assert proposal.description == "claude set OFFSET = 1.5"
    assert (scratch / "impl.py").read_text() == IMPL.replace("10.0", "1.5")


def test_a_prompt_pasted_as_an_argument_is_named_the_hosts_limit(tmp_path: Path) -> None:
    scratch = _scratch(tmp_path)
    cfg = _config("claude", "http://127.0.0.1:9").model_copy(
        update={"command": 'claude -p --dangerously-skip-permissions "$(cat {prompt_file})"'}
    )
    with pytest.raises(UserError) as caught:
        CommandAgent(cfg).propose(_ctx(), scratch)
    said = str(caught.value)
    assert "E2BIG" in said and "Argument list too long" in said and "on stdin" in said
    assert "cannot run" not in said and "install the CLI" not in said


REFUSING_CLI = """
import json, os, sys, urllib.request, urllib.error
req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=b"{}",
                             headers={"x-api-key": os.environ["ANTHROPIC_API_KEY"]})
try:
    urllib.request.urlopen(req, timeout=20)
except urllib.error.HTTPError as e:
    print("Invalid API key", e.code)
    sys.exit(1)
"""


def test_a_key_the_upstream_refuses_stops_the_night_after_one_request(
    repo: Path, start: Any
) -> None:
    (repo / "agent_cli.py").write_text(REFUSING_CLI)
    git(repo, "add", "agent_cli.py")
    git(repo, "commit", "-qm", "a CLI whose key is refused")
    with FakeAnthropic() as api:
        api.error(401, "authentication_error")
        agent = {"kind": "command", "image": IMAGE, "base_url": api.base_url,
                 "key_env": "AGENT_TEST_KEY", "command": "python3 agent_cli.py", "timeout_s": 60}  # fmt: skip
        run = start(contract_for(Path("x"), agent=agent, **{"budget.max_experiments": 3}))
        with pytest.raises(UserError, match=r"refused the key in AGENT_TEST_KEY \(HTTP 401\)"):
            run.execute()
    assert len(api.requests) == 1  # no retry loop, no second proposal
    assert all(e.status != "refused" for e in run.ledger.experiments())
