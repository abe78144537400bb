"""A person steers a running night: `autoresearch steer TAG TEXT` reaches every later proposal's
prompt, is kept in the ledger with its time, and `log` shows it."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import contract_for

CLI = [sys.executable, "-m", "orchestrator"]
NOTE = "stop trying the offset; try the cache instead"


def test_a_note_given_while_the_night_runs_reaches_the_next_proposal(
    repo: Path, tmp_path: Path, start
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    steer = " ".join([*CLI, "--repo", str(repo), "steer", "t", repr(NOTE)])
    agent = (  # experiment 1's agent is where the person speaks up, from another process
        f'cp "$AUTORESEARCH_PROMPT" {prompts}/$AUTORESEARCH_EXPERIMENT.md; '
        f'if [ "$AUTORESEARCH_EXPERIMENT" = 1 ]; then {steer}; fi; '
        'echo "# idea $AUTORESEARCH_EXPERIMENT" >> impl.py'
    )
    contract = contract_for(Path("x"), agent={"kind": "command", "command": agent, "on_host": True},
                            **{"budget.max_experiments": 3, "budget.pipeline": 0})  # fmt: skip
    run = start(contract)
    run.execute()
    assert NOTE not in (prompts / "1.md").read_text()
    for later in ("2.md", "3.md"):
        shown = (prompts / later).read_text()
        assert "# Steering (written by the human" in shown and NOTE in shown
    ((_at, text),) = run.ledger.steering()
    assert text == NOTE
    log = subprocess.run([*CLI, "--repo", str(repo), "log", "t"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert "steered at" in log and NOTE in log
    from orchestrator.morning.report import write_report

    page = write_report(run.ledger, run.ws, run.contract).read_text()
    assert "<h2>Steering</h2>" in page and html.escape(NOTE) in page.split("<h2>Steering</h2>")[1]


def test_a_note_is_one_line_of_bounded_length(repo: Path, tmp_path: Path, start) -> None:
    start(contract_for(Path("x"), agent={"kind": "none"})).execute()
    for bad in ("   ", "x" * 2001):
        out = subprocess.run([*CLI, "--repo", str(repo), "steer", "t", bad], capture_output=True,
                             text=True)  # fmt: skip
        assert out.returncode != 0 and "a steering note is 1 to 2000 characters" in out.stderr
    ok = subprocess.run([*CLI, "--repo", str(repo), "steer", "t", "two\nlines\x1b[31m"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    from orchestrator.ledger import Ledger

    ((_at, text),) = Ledger(repo / ".autoresearch" / "t").steering()
    assert text == "two lines[31m"  # one line, no control character
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([*CLI, "--repo", str(repo), "steer", "nosuchrun", "x"], check=True,
                       capture_output=True)  # fmt: skip


def test_pause_holds_new_proposals_and_resume_starts_them_again(
    repo: Path, tmp_path: Path, start
) -> None:
    """A person pauses a running night from another terminal: what is in flight finishes and
    is recorded, no proposal starts; `resume` on the live night starts them again."""
    import threading
    import time

    pause = " ".join([*CLI, "--repo", str(repo), "pause", "t"])
    agent = (  # experiment 1's agent is where the person pauses the night
        f'if [ "$AUTORESEARCH_EXPERIMENT" = 1 ]; then {pause}; fi; '
        'echo "# idea $AUTORESEARCH_EXPERIMENT" >> impl.py'
    )
    contract = contract_for(Path("x"), agent={"kind": "command", "command": agent, "on_host": True},
                            **{"budget.max_experiments": 3, "budget.pipeline": 0})  # fmt: skip
    run = start(contract)
    seen: dict[str, object] = {}

    def person() -> None:
        deadline = time.monotonic() + 120
        while not run.ledger.paused() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(4)  # experiment 1 ends meanwhile; nothing new may start
        seen["while paused"] = [e.id for e in run.ledger.experiments()]
        out = subprocess.run([*CLI, "--repo", str(repo), "resume", "t"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        seen["resume"] = (out.returncode, out.stdout + out.stderr)

    helper = threading.Thread(target=person)
    helper.start()
    assert run.execute() == "max experiments reached (3)"
    helper.join()
    assert seen["while paused"] == [0, 1]
    assert seen["resume"] == (0, "run t: proposals start again\n")
    assert [e.id for e in run.ledger.experiments()] == [0, 1, 2, 3]
    assert [e["kind"] for e in run.ledger.events() if "pause" in e["kind"]] == ["pause", "unpause"]
