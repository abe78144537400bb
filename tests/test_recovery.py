"""Nights that must go on: the narrow kill windows, failures blamed on the right party, and
the promises the README makes about what a run writes. Each failed before its fix."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.errors import UserError
from orchestrator.night import Backoff
from orchestrator.runs import list_runs, open_measuring, open_run, run_dir, start_run
from tests.conftest import IMPL, contract_for, git, make_patch

IMPROVED = IMPL.replace("OFFSET = 10.0", "OFFSET = 4.0")


def _old(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    past = time.time() - 60
    os.utime(path, (past, past))


def test_a_stale_ref_lock_a_kill_left_never_ends_the_night(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    contract = contract_for(patches)
    _old(repo / ".git" / "refs" / "heads" / "autoresearch" / "lk.lock")  # killed while creating it
    run = start_run(
        repo, "lk", contract, "test", sandbox, say=lambda _m: None, backoff=Backoff(0.1, 0.5)
    )
    _old(repo / ".git" / "refs" / "heads" / "autoresearch" / "lk.lock")  # ...and while merging
    _old(repo / ".git" / "refs" / "autoresearch" / "lk" / "exp-0001.lock")  # ...and while freezing
    assert run.execute() == "the agent has nothing more to propose"
    e = run.ledger.get(1)
    assert e is not None and e.status == "keep" and e.merged
    assert git(repo, "show", "autoresearch/lk:impl.py") == IMPROVED
    assert not list((repo / ".git" / "refs").rglob("*.lock"))


def test_a_kill_while_the_run_is_made_leaves_a_tag_that_works(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    runs = repo / ".autoresearch"
    half = runs / ".early.new-abc123"  # killed after the ledger file, before its row and rename
    half.mkdir(parents=True)
    (half / "ledger.sqlite").write_bytes(b"")
    (runs / "early").mkdir()  # killed after a tuner made its study, before any ledger
    (runs / "early" / "tuner.sqlite").write_bytes(b"")
    assert list_runs(repo) == []
    with pytest.raises(UserError, match="no run tagged 'early'"):
        open_run(repo, "early", sandbox, say=lambda _m: None)
    run = start_run(repo, "early", contract_for(patches), "test", sandbox, say=lambda _m: None)
    assert run.execute() == "the agent has nothing more to propose"
    assert list_runs(repo) == ["early"] and not half.exists()


def test_a_kill_after_the_freeze_before_the_diff_loses_no_diff(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    run = start_run(repo, "df", contract_for(patches), "test", sandbox, say=lambda _m: None)
    run.execute()
    patch = run.ledger.exp_dir(1) / "diff.patch"
    patch.unlink()
    run.ledger.db.execute("UPDATE experiment SET phase='frozen', status=NULL WHERE id=1")
    git(
        repo, "update-ref", "refs/heads/autoresearch/df", run.ledger.get(0).parent
    )  # not merged yet
    again = open_run(repo, "df", sandbox, say=lambda _m: None)
    again.execute()
    assert "+OFFSET = 4.0" in patch.read_text()
    assert again.ledger.get(1).status == "keep"


FLAKY_CLI = """
import pathlib, sys
n = pathlib.Path(sys.argv[1])
tries = int(n.read_text()) if n.exists() else 0
n.write_text(str(tries + 1))
if tries < 2:
    print("API error: overloaded", file=sys.stderr)
    sys.exit(1)
impl = pathlib.Path("impl.py")
impl.write_text(impl.read_text().replace("OFFSET = 10.0", "OFFSET = 4.0"))
print("DESCRIPTION: lower the offset")
"""


def test_a_failing_agent_cli_is_retried_never_a_refusal(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    cli, counter = tmp_path / "cli.py", tmp_path / "tries"
    cli.write_text(FLAKY_CLI)
    said: list[str] = []
    contract = contract_for(Path("x"), agent={"kind": "command", "command": f"{sys.executable} {cli} {counter}", "on_host": True},
                            **{"budget.max_experiments": 1})  # fmt: skip
    run = start_run(
        repo, "cli", contract, "test", sandbox, say=said.append, backoff=Backoff(0.05, 0.1)
    )
    run.execute()
    e = run.ledger.get(1)
    assert e is not None and e.status == "keep" and counter.read_text() == "3"
    assert sum("the agent's backend is unavailable" in m for m in said) == 2
    missing = contract_for(Path("x"), agent={"kind": "command", "command": "no-such-cli-xyz {prompt_file}", "on_host": True},
                           **{"budget.max_experiments": 1})  # fmt: skip
    with pytest.raises(UserError, match="cannot run"):
        start_run(repo, "nocli", missing, "test", sandbox, say=lambda _m: None).execute()


def test_a_stored_contract_that_no_longer_validates_is_one_line(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    run = start_run(repo, "old", contract_for(patches), "test", sandbox, say=lambda _m: None)
    stored = json.loads(run.ledger.run().contract)
    stored["sandbox"]["retired_option"] = 1
    run.ledger.db.execute("UPDATE run SET contract = ?", (json.dumps(stored),))
    cli = [sys.executable, "-m", "orchestrator", "--repo", str(repo)]
    for command in (["status", "old"], ["resume", "old"]):
        out = subprocess.run([*cli, *command], capture_output=True, text=True)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert (
            "made by another version of autoresearch" in out.stderr
            and len(out.stderr.splitlines()) == 1
        )


# The reading code of autoresearch's analysis.ipynb, first cells (pandas there, csv here).
def _analysis(tsv: Path, metric: str) -> list[tuple[int, float, str]]:
    with tsv.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    kept = [(i, float(r[metric]), r["status"]) for i, r in enumerate(rows) if r["status"] == "keep"]
    assert all(float(r["memory_gb"]) >= 0 for r in rows)
    return kept


def test_results_tsv_is_in_autoresearchs_format(repo: Path, tmp_path: Path, sandbox) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    run = start_run(repo, "tsv", contract_for(patches), "test", sandbox, say=lambda _m: None)
    run.execute()
    tsv = run.run_dir / "results.tsv"
    assert tsv.read_text().splitlines()[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"
    assert _analysis(tsv, "score") == [(0, 10.0, "keep"), (1, 4.0, "keep")]
    memory = [float(line.split("\t")[2]) for line in tsv.read_text().splitlines()[1:]]
    assert all(m > 0 for m in memory)  # peak memory is known on CPU runs: never 0.0


def test_cleanup_also_removes_the_work_folders_a_killed_run_left(
    repo: Path, tmp_path: Path
) -> None:
    box = run_dir(repo, "gone") / "sandbox"
    left = box / "work-dead"
    (left / "workspace").mkdir(parents=True)
    (left / "owner").write_text(f"{socket.gethostname()}:4194303:0")  # a maker that is dead
    out = subprocess.run([sys.executable, "-m", "orchestrator", "--repo", str(repo), "cleanup"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert "1 work folder(s)" in out.stdout and not left.exists()


def test_verify_judges_the_claim_a_drifted_level_is_not_a_lost_win(tmp_path: Path, sandbox) -> None:
    """The machine got slower since the night: every score is 3 higher. The win still beats its
    parent by its full margin, so it reproduces; the drift is said apart."""
    from orchestrator.morning.verify import verify
    from tests.conftest import make_repo

    load = tmp_path / "load"
    load.mkdir()
    (load / "level").write_text("0")
    bench = "import pathlib\nfrom impl import score\nprint(f\"score: {score() + float(pathlib.Path('/load/level').read_text()):.6f}\")\n"
    repo = make_repo(tmp_path / "drift", {"impl.py": IMPL, "bench.py": bench})
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    contract = contract_for(patches, **{"evaluator.data": [{"source": str(load), "target": "/load"}],
                                        "metric.min_improvement": 1.0})  # fmt: skip
    start_run(repo, "drift", contract, "test", sandbox, say=lambda _m: None).execute()
    (load / "level").write_text("3")
    (check,) = verify(open_measuring(repo, "drift", sandbox, say=lambda _m: None))
    assert check.now == 7.0 and check.parent_now == 13.0 and check.gain_now == 6.0
    assert check.reproduces and check.drift == 3.0


def test_a_resume_at_once_clears_the_lock_a_kill_just_left(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    """A supervisor restarts a killed night within a second: the locks its ref updates left are
    seconds old, and no live git of this run can hold them (the run's own lock is held)."""
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    said: list[str] = []
    run = start_run(repo, "now", contract_for(patches), "test", sandbox, say=said.append,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    fresh = [repo / ".git" / "refs" / "heads" / "autoresearch" / "now.lock",
             repo / ".git" / "refs" / "autoresearch" / "now" / "exp-0001.lock"]  # fmt: skip
    for lock in fresh:  # a kill inside git's ref update, a moment ago
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
    assert run.execute() == "the agent has nothing more to propose"
    e = run.ledger.get(1)
    assert e is not None and e.status == "keep" and e.merged
    assert git(repo, "show", "autoresearch/now:impl.py") == IMPROVED
    assert any("removed 2 stale git lock(s)" in m for m in said), said


REFUSALS: dict[str, tuple[dict[str, object], str]] = {
    "empty patches folder": ({"agent": {"kind": "replay", "patches": "{empty}"}}, "holds no patch files"),
    "no patches folder": ({"agent": {"kind": "replay", "patches": "/nonexistent/patches"}}, "patches"),
    "no Claude key": ({"agent": {"kind": "anthropic"}}, "ANTHROPIC_API_KEY is not set"),
    "no key for an agent service": (
        {"agent": {"kind": "command", "command": "true",
                   "services": [{"kind": "openai", "headers": {"authorization": "NO_SUCH_KEY_VAR"}}]}},
        "NO_SUCH_KEY_VAR .* is not set"),
    "no such agent image": (
        {"agent": {"kind": "command", "command": "true", "services": [], "image": "no/such-image:1"}},
        "agent.image no/such-image:1 is not present"),
    "no key for a run's service": (
        {"sandbox.services": [{"name": "llm", "kind": "anthropic", "upstream": "http://127.0.0.1:9",
                               "headers": {"x-api-key": "NO_SUCH_KEY_VAR"}, "paths": ["/v1/messages"]}]},
        "NO_SUCH_KEY_VAR .* is not set"),
    "a space in no file": (
        {"implementation.paths": ["impl.py", "bench2.py"],
         "agent": {"kind": "tuner", "space": {"OFFSET": {"type": "float", "low": 0, "high": 1}}}},
        "say which file holds it"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_every_refusal_comes_before_the_run_folder_and_branch(
    case: str, repo: Path, tmp_path: Path, sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused start leaves nothing: no run folder, no branch, the tag free for the next try."""
    from orchestrator.errors import ContractError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    over, said = REFUSALS[case]
    (tmp_path / "empty").mkdir()
    over = json.loads(json.dumps(over).replace("{empty}", str(tmp_path / "empty")))
    with pytest.raises((UserError, ContractError), match=said):
        start_run(repo, "refused", contract_for(tmp_path / "patches", **over), "test", sandbox,
                  say=lambda _m: None)  # fmt: skip
    assert not (repo / ".autoresearch" / "refused").exists()
    assert "autoresearch/refused" not in git(repo, "branch", "--list", "autoresearch/*")
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    run = start_run(repo, "refused", contract_for(patches), "test", sandbox, say=lambda _m: None)
    assert run.execute() == "the agent has nothing more to propose"  # the same tag, next try
