"""Shared notes: what one proposal found reaches the proposals after it, bounded, kept in the
ledger, whichever agent wrote it (a CLI's `NOTE:` lines, Claude's `submit(notes=...)`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.agents.context import NOTES_SHOWN
from tests.conftest import contract_for
from tests.fake_anthropic import FakeAnthropic, edit, text, tool


def test_a_clis_notes_reach_the_later_proposals(repo: Path, tmp_path: Path, start) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    agent = (
        f'cp "$AUTORESEARCH_PROMPT" {prompts}/$AUTORESEARCH_EXPERIMENT.md; '
        'echo "# idea $AUTORESEARCH_EXPERIMENT" >> impl.py; '
        'echo "NOTE: idea $AUTORESEARCH_EXPERIMENT: comments never move the score"; '
        'echo "NOTE: second thought \x1b[31m of $AUTORESEARCH_EXPERIMENT"'
    )
    contract = contract_for(Path("x"), agent={"kind": "command", "command": agent, "on_host": True},
                            **{"budget.max_experiments": 12, "budget.pipeline": 0})  # fmt: skip
    run = start(contract)
    run.execute()
    assert "# Notes the proposers left" not in (prompts / "1.md").read_text()
    second = (prompts / "2.md").read_text()
    assert "- #1 [discard]: idea 1: comments never move the score" in second
    assert "\x1b" not in second  # one plain line each
    last = (prompts / "12.md").read_text()
    assert f"({2 * 11 - NOTES_SHOWN} earlier notes not shown)" in last  # bounded
    assert "idea 11: comments never move the score" in last and "idea 1:" not in last
    assert len(run.ledger.notes()) == 2 * 12
    from orchestrator.morning.report import write_report

    page = (
        write_report(run.ledger, run.ws, run.contract).read_text().split("<h2>Shared notes</h2>")[1]
    )
    assert "#12: idea 12: comments never move the score" in page and "\x1b" not in page


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with FakeAnthropic() as fake:
        yield fake


def test_claudes_submitted_notes_reach_the_next_proposal(api: FakeAnthropic, start) -> None:
    api.message(
        edit("str_replace", path="impl.py", old_str="OFFSET = 10.0", new_str="OFFSET = 2.0")
    )
    api.message(tool("submit", description="lower", hypothesis="smaller is better",
                     notes=["the offset is the whole score", "x" * 900]))  # fmt: skip
    api.message(edit("str_replace", path="impl.py", old_str="OFFSET = 2.0", new_str="OFFSET = 1.0"))
    api.message(tool("submit", description="lower still", hypothesis="-"))
    agent = {"kind": "anthropic", "base_url": api.base_url, "stream_retry_delay_s": 0.01}
    run = start(contract_for(Path("x"), agent=agent,
                             **{"budget.max_experiments": 2, "budget.pipeline": 0}))  # fmt: skip
    run.execute()
    notes = run.ledger.notes()
    assert notes[0] == (1, "the offset is the whole score") and len(notes[1][1]) == 500
    second = api.requests[2]["messages"][0]["content"][0]["text"]
    assert "- #1 [keep]: the offset is the whole score" in second


def test_claudes_note_tool_is_kept_even_without_a_submission(api: FakeAnthropic, start) -> None:
    """The `note` tool: what it found reaches the next proposal though it never submitted."""
    # the fourth note is over the limit of three; no submission: max_turns = 2 ends it
    api.message(*[tool("note", text=f"finding {i}: the cache never hits") for i in range(4)])
    api.message(text("I give up."))
    api.message(
        edit("str_replace", path="impl.py", old_str="OFFSET = 10.0", new_str="OFFSET = 1.0")
    )
    api.message(tool("submit", description="lower", hypothesis="-"))
    agent = {"kind": "anthropic", "base_url": api.base_url, "stream_retry_delay_s": 0.01,
             "max_turns": 2}  # fmt: skip
    run = start(contract_for(Path("x"), agent=agent,
                             **{"budget.max_experiments": 2, "budget.pipeline": 0}))  # fmt: skip
    run.execute()
    first = run.ledger.get(1)
    assert first is not None and first.status == "refused", first
    assert run.ledger.notes() == [(1, f"finding {i}: the cache never hits") for i in range(3)]
    over = api.requests[1]["messages"][-1]["content"]
    assert any(r.get("is_error") and "at most 3" in str(r.get("content")) for r in over), over
    second = api.requests[2]["messages"][0]["content"][0]["text"]
    assert "- #1 [refused]: finding 0: the cache never hits" in second
