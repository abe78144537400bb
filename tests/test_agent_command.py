"""Any coding-agent CLI as the proposer, with a small script standing in for it."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import IMPL, contract_for, git

FAKE_CLI = """
import pathlib, subprocess, sys
prompt = pathlib.Path(sys.argv[1]).read_text()
assert "# Direction" in prompt and "# History" in prompt and "OFFSET = 10.0" in prompt, prompt[:500]
# A CLI that uses git works in its own throwaway repository, never the user's.
subprocess.run(["git", "status", "--short"], check=True)
target = pathlib.Path(sys.argv[2])
target.write_text(pathlib.Path("impl.py").read_text().replace("OFFSET = 10.0", "OFFSET = 1.5"))
subprocess.run(["git", "commit", "-qam", "agent commit"], check=True)
print("thinking out loud...")
print("DESCRIPTION: shrink the offset")
print("HYPOTHESIS: the score is the offset")
"""


def _contract(tmp_path: Path, target: str = "impl.py", timeout: float = 60):  # type: ignore[no-untyped-def]
    cli = tmp_path / "fake_cli.py"
    cli.write_text(FAKE_CLI)
    command = f"{sys.executable} {cli} {{prompt_file}} {target}"
    return contract_for(Path("x"), agent={"kind": "command", "command": command, "timeout_s": timeout, "on_host": True},
                        **{"budget.max_experiments": 1})  # fmt: skip


def test_a_cli_edits_and_its_change_is_kept(repo: Path, tmp_path: Path, start) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    run = start(_contract(tmp_path))
    run.execute()
    e = run.ledger.get(1)
    assert (
        e.status == "keep"
        and e.description == "shrink the offset"
        and e.hypothesis == "the score is the offset"
    )
    assert git(repo, "show", "autoresearch/t:impl.py") == IMPL.replace("10.0", "1.5")
    assert (
        git(repo, "rev-parse", "HEAD").strip() == head
    )  # the CLI's own commit stayed in its sandbox repo
    assert "agent commit" not in git(repo, "log", "--all", "--format=%s")


def test_a_cli_writing_outside_the_allowed_paths_is_refused(
    repo: Path, tmp_path: Path, start
) -> None:
    run = start(_contract(tmp_path, target="bench.py"))
    run.execute()
    e = run.ledger.get(1)
    assert e.status == "refused" and "bench.py is outside implementation.paths" in e.reason


def test_a_cli_that_hangs_is_stopped_at_its_time_limit(repo: Path, tmp_path: Path, start) -> None:
    contract = contract_for(Path("x"), agent={"kind": "command", "command": "sleep 60", "timeout_s": 1, "on_host": True},
                            **{"budget.max_experiments": 1})  # fmt: skip
    run = start(contract)
    run.execute()
    e = run.ledger.get(1)
    assert e.status == "refused" and "timed out after 1 s" in e.reason


def test_a_proposal_says_how_long_the_cli_itself_worked(tmp_path: Path) -> None:
    """The proposers size their count from the agent's own time, not the copy and prompt made
    around it: the command's seconds come back with its proposal."""
    from orchestrator.agents import Context
    from orchestrator.agents.command import CommandAgent
    from orchestrator.agents.config import CommandAgentConfig

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "impl.py").write_text(IMPL)
    command = "sleep 0.6; sed -i 's/OFFSET = 10.0/OFFSET = 1.5/' impl.py"
    ctx = Context(experiment=1, contract=_contract(tmp_path), direction="# Direction",
                  best_commit="0" * 40, files={"impl.py": IMPL})  # fmt: skip
    agent = CommandAgent(CommandAgentConfig(command=command, on_host=True), say=lambda _m: None)
    proposal = agent.propose(ctx, scratch)
    assert proposal is not None and proposal.agent_s is not None
    assert 0.6 <= proposal.agent_s < 30
    assert (scratch / "impl.py").read_text() == IMPL.replace("10.0", "1.5")
