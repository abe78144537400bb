"""The real Claude Code and Codex of the agent image, as the README documents them (opt-in).

    AUTORESEARCH_REAL_CLIS=1 .venv/bin/python -m pytest tests/test_agent_real_clis.py

Each CLI runs in `autoresearch/agent:latest` (built on first use, ~2 min: too slow for
`make test`, whose fake CLIs take the same command forms: test_agent_forms.py) against a
fake API on 127.0.0.1 through the gateway: the fake answers with a shell command that
makes the edit (Claude Code's `Bash` tool; Codex's `exec` tool running `exec_command`),
then with the description. A night keeps the edit and records the tokens; a prompt over
256 KiB reaches each CLI whole, on stdin.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents import Context
from orchestrator.agents.command import CommandAgent
from orchestrator.agents.config import CommandAgentConfig
from tests.conftest import IMPL, contract_for, git
from tests.fake_anthropic import FakeAnthropic, text, tool
from tests.fake_openai import FakeOpenAI, custom, message
from tests.test_agent_forms import FORMS

pytestmark = pytest.mark.skipif(
    not os.environ.get("AUTORESEARCH_REAL_CLIS"),
    reason="opt-in: AUTORESEARCH_REAL_CLIS=1 runs the agent image's real CLIs (builds it once)",
)
KEY = "sk-real-cli-test-" + secrets.token_hex(12)
SED = "sed -i 's/OFFSET = 10.0/OFFSET = 1.5/' impl.py"
DONE = "DESCRIPTION: set the offset to 1.5\nHYPOTHESIS: the score is the offset"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TEST_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


def _api(cli: str) -> Any:
    """A fake that answers the CLI's first call with the edit, then with the description."""
    if cli == "claude":
        api: Any = FakeAnthropic("claude-haiku-4-5")
        api.message(tool("Bash", command=SED, description="set the offset"))
        api.message(text(DONE))
    else:
        api = FakeOpenAI("gpt-5-mini")
        api.answer(
            custom("exec", f"const r = await tools.exec_command({{cmd: {json.dumps(SED)}}});")
        )
        api.answer(message(DONE))
    return api


def _agent(cli: str, url: str) -> dict[str, Any]:
    agent: dict[str, Any] = {"kind": "command", "command": FORMS[cli], "timeout_s": 180}
    if cli == "claude":
        return {**agent, "base_url": url, "key_env": "AGENT_TEST_KEY"}
    service = {"kind": "openai", "upstream": url, "headers": {"authorization": "AGENT_TEST_KEY"}}
    return {**agent, "services": [service]}


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_the_real_cli_edits_through_the_gateway_and_its_tokens_are_recorded(
    cli: str, repo: Path, start: Any
) -> None:
    with _api(cli) as api:
        contract = contract_for(Path("x"), agent=_agent(cli, api.base_url),
                                **{"budget.max_experiments": 1})  # fmt: skip
        run = start(contract)
        run.execute()
    e = run.ledger.get(1)
    assert e is not None and e.status == "keep", (e.status, e.reason)
    assert e.description == "set the offset to 1.5"
    assert git(repo, "show", "autoresearch/t:impl.py") == IMPL.replace("10.0", "1.5")
    assert e.usage["input"] >= 2000 and e.usage["output"] >= 160 and e.cost_usd, e.usage
    key_header = "x-api-key" if cli == "claude" else "authorization"
    assert all(KEY in h[key_header] for h in api.headers)  # added on the host


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_the_real_cli_takes_a_prompt_past_the_argument_limit(cli: str, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "impl.py").write_text(IMPL)
    big = IMPL + "# " + "x" * 300_000 + "\n"
    ctx = Context(experiment=1, contract=contract_for(Path("x")), direction="# Direction",
                  best_commit="0" * 40, files={"impl.py": big})  # fmt: skip
    with _api(cli) as api:
        cfg = CommandAgentConfig(**_agent(cli, api.base_url))
        proposal = CommandAgent(cfg).propose(ctx, scratch)
    assert (scratch / "impl.py").read_text() == IMPL.replace("10.0", "1.5")
    assert proposal.description == "set the offset to 1.5"
    assert "x" * 300_000 in json.dumps(api.requests[0])
