"""Claude as the proposer: the real `anthropic` SDK against a fake Messages API on loopback,
end to end through the loop and the real sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.agents.config import DEFAULT_PRICES, AnthropicAgentConfig
from orchestrator.errors import ContractError, UserError
from tests.conftest import IMPL, contract_for, git
from tests.fake_anthropic import FakeAnthropic, edit, text, tool

IMPROVED = IMPL.replace("OFFSET = 10.0", "OFFSET = 2.0")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with FakeAnthropic() as fake:
        yield fake


def _contract(api: FakeAnthropic, **over: object):  # type: ignore[no-untyped-def]
    agent = {
        "kind": "anthropic",
        "base_url": api.base_url,
        "stream_retry_delay_s": 0.01,
        "api_retries": 2,
    }
    return contract_for(Path("unused"), **{"agent": agent, "budget.max_experiments": 1, **over})


def _honest_edit(api: FakeAnthropic) -> None:
    api.message(edit("str_replace", path="impl.py", old_str="OFFSET = 10.0", new_str="OFFSET = 2.0"),
                usage={"cache_read_input_tokens": 800})  # fmt: skip
    api.message(tool("submit", description="lower the offset", hypothesis="a smaller constant scores lower"),
                usage={"cache_read_input_tokens": 800})  # fmt: skip


def test_an_edit_and_submit_is_kept_with_its_cost_and_hypothesis(
    api: FakeAnthropic, repo: Path, start
) -> None:
    api.message(
        text("Let me look."),
        edit("view", path="/impl.py"),
        usage={"cache_creation_input_tokens": 800},
    )
    _honest_edit(api)
    run = start(_contract(api))
    assert run.execute() == "max experiments reached (1)"
    e = run.ledger.get(1)
    assert e.status == "keep" and e.description == "lower the offset"
    assert e.hypothesis == "a smaller constant scores lower"
    assert git(repo, "show", "autoresearch/t:impl.py") == IMPROVED
    assert e.usage == {"input": 3000, "output": 300, "cache_write": 800, "cache_read": 1600}
    p = DEFAULT_PRICES["claude-sonnet-5-5"]
    assert e.cost_usd == pytest.approx(
        (3000 * p.input + 300 * p.output + 800 * p.cache_write + 1600 * p.cache_read) / 1e6
    )
    first, second = api.requests[0], api.requests[1]
    assert first["stream"] is True and first["model"] == "claude-sonnet-5-5"
    assert {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"} in first["tools"]
    assert any(t.get("name") == "submit" for t in first["tools"])
    assert first["system"][1]["cache_control"] == {
        "type": "ephemeral"
    }  # the stable blocks are cached
    assert (
        "# Direction" in first["system"][1]["text"]
        and "OFFSET = 10.0" in first["messages"][0]["content"][0]["text"]
    )
    result = second["messages"][-1]["content"][0]
    assert (
        result["type"] == "tool_result"
        and "OFFSET = 10.0" in result["content"]
        and not result["is_error"]
    )


def test_an_edit_outside_the_allowed_paths_is_refused_and_changes_nothing(
    api: FakeAnthropic, repo: Path, start
) -> None:
    api.message(edit("create", path="bench.py", file_text="print('score: -1000')\n"))
    _honest_edit(api)
    bench = (repo / "bench.py").read_text()
    run = start(_contract(api))
    run.execute()
    refused = api.requests[1]["messages"][-1]["content"][0]
    assert refused["is_error"] is True and "outside implementation.paths" in refused["content"]
    assert (repo / "bench.py").read_text() == bench
    assert git(repo, "show", "autoresearch/t:bench.py") == bench
    assert run.ledger.get(1).status == "keep"


def test_429_and_529_are_retried_by_the_sdk(api: FakeAnthropic, start) -> None:
    api.error(429, "rate_limit_error")
    api.error(529, "overloaded_error")
    _honest_edit(api)
    run = start(_contract(api))
    run.execute()
    assert len(api.requests) == 4 and run.ledger.get(1).status == "keep"


def test_an_overload_in_mid_stream_is_retried_by_us(api: FakeAnthropic, start) -> None:
    api.message(break_with="overloaded_error")
    _honest_edit(api)
    run = start(_contract(api))
    run.execute()
    assert len(api.requests) == 3 and run.ledger.get(1).status == "keep"


def test_a_long_outage_pauses_and_is_never_the_candidates_failure(
    api: FakeAnthropic, start
) -> None:
    for _ in range(3):  # more than the SDK's 2 retries: one whole proposal attempt fails
        api.error(529, "overloaded_error")
    _honest_edit(api)
    run = start(_contract(api))
    assert run.execute() == "max experiments reached (1)"
    assert [(e.id, e.status) for e in run.ledger.experiments()] == [(0, "keep"), (1, "keep")]
    events = [json.loads(x) for x in (run.run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "agent-unavailable" and "529" in e["error"] for e in events)


def test_costs_add_up_and_the_cost_stop_rule_ends_the_night(api: FakeAnthropic, start) -> None:
    _honest_edit(api)
    run = start(_contract(api, **{"budget.max_experiments": 5, "budget.max_cost_usd": 0.001}))
    why = run.execute()
    assert why.startswith("max cost reached ($0.01")
    assert run.ledger.total_cost() == pytest.approx(run.ledger.get(1).cost_usd)


def test_an_unknown_model_has_an_unknown_cost(api: FakeAnthropic, start) -> None:
    _honest_edit(api)
    contract = _contract(api)
    run = start(
        contract.model_copy(
            update={"agent": contract.agent.model_copy(update={"model": "claude-next"})}
        )
    )
    run.execute()
    assert run.ledger.get(1).cost_usd is None and run.ledger.get(1).usage["input"] == 2000


def test_no_key_is_one_line_naming_the_alternatives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from orchestrator.agents.anthropic import AnthropicAgent
    from orchestrator.runs import build_agent

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(UserError) as e:
        AnthropicAgent(AnthropicAgentConfig())
    assert "ANTHROPIC_API_KEY is not set" in e.value.message and "--agent tuner" in e.value.message
    assert "--agent replay" in e.value.message and "\n" not in e.value.message
    with pytest.raises(
        ContractError, match="set ANTHROPIC_API_KEY for Claude, or declare a search space"
    ):
        build_agent(contract_for(Path("x"), agent={"kind": "auto"}), tmp_path)


@pytest.mark.parametrize(
    ("status", "says"), [(401, "refused the key"), (404, "does not know model")]
)
def test_a_wrong_key_or_model_is_one_line_at_once_not_a_night_of_refusals(
    api: FakeAnthropic, start, status: int, says: str
) -> None:
    from orchestrator.errors import UserError

    for _ in range(5):
        api.error(status, "authentication_error" if status == 401 else "not_found_error")
    run = start(_contract(api, **{"budget.max_experiments": 5}))
    with pytest.raises(UserError, match=says):
        run.execute()
    assert [e.status for e in run.ledger.experiments()] == [
        "keep",
        None,
    ]  # nothing recorded as refused
    assert len(api.requests) == 1


def test_the_history_tool_gives_an_earlier_experiments_diff(
    api: FakeAnthropic, repo: Path, start
) -> None:
    """Older keeps are named in brief in the prompt; the change each made is there on request."""
    _honest_edit(api)
    api.message(tool("history", diff=1), tool("history", diff=7), tool("history", diff="x"))
    api.message(edit("str_replace", path="impl.py", old_str="OFFSET = 2.0", new_str="OFFSET = 3.0"))
    api.message(tool("submit", description="a larger offset", hypothesis="to see"))
    run = start(_contract(api, **{"budget.max_experiments": 2, "budget.pipeline": 0}))
    run.execute()
    results = api.requests[-2]["messages"][-1]["content"]
    assert [r["type"] for r in results] == ["tool_result"] * 3
    one, missing, bad = (r["content"] for r in results)
    assert one.startswith("the diff of experiment #1:\n```diff\n") and "+OFFSET = 2.0" in one
    assert "experiment 7 has no diff" in missing and "must be an experiment id" in bad


def test_a_proposal_that_reaches_the_agent_after_the_cancel_calls_nothing(
    api: FakeAnthropic, tmp_path: Path
) -> None:
    """The teardown may come between a proposer's last look at the night and its agent's start:
    no conversation opens then (it would spend after the night ended), and it says so."""
    from orchestrator.agents.anthropic import AnthropicAgent
    from orchestrator.agents.context import Context
    from orchestrator.errors import Cancelled

    _honest_edit(api)
    agent = AnthropicAgent(AnthropicAgentConfig(base_url=api.base_url), say=lambda _m: None)
    agent.cancel()  # the night is torn down
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "impl.py").write_text(IMPL)
    ctx = Context(experiment=1, contract=_contract(api), direction="# d", best_commit="0" * 40)
    with pytest.raises(Cancelled, match="cancelled"):
        agent.propose(ctx, scratch)
    assert api.requests == [] and (scratch / "impl.py").read_text() == IMPL
