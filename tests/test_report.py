"""The morning: the HTML report in a real headless browser, the reasoning trail, JSON,
`accept` into the user's branch, and the live view in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.morning.report import write_report
from orchestrator.night import Backoff
from orchestrator.night.driver import Night
from orchestrator.runs import start_run
from tests.conftest import IMPL, contract_for, git, make_patch

CLI = [sys.executable, "-m", "orchestrator"]
BETTER = IMPL.replace("10.0", "4.0")


@pytest.fixture
def night(repo: Path, tmp_path: Path, sandbox) -> Night:  # type: ignore[no-untyped-def]
    """A real small run: worse, better, a crash, and a change on top of the better one."""
    patches = tmp_path / "patches"
    make_patch(patches, "01-raise-the-offset.patch", "impl.py", IMPL, IMPL.replace("10.0", "11.0"))
    make_patch(patches, "02-lower-the-offset.patch", "impl.py", IMPL, BETTER)
    make_patch(
        patches,
        "03-break-it.patch",
        "impl.py",
        BETTER,
        BETTER + "\nraise SystemExit('wrong answer: boom')\n",
    )
    make_patch(patches, "04-lower-again.patch", "impl.py", BETTER, BETTER.replace("4.0", "3.0"))
    run = start_run(repo, "n", contract_for(patches), "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    return run


def _chromium() -> str | None:
    return next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )


def test_the_report_renders_in_headless_chromium(night: Night, tmp_path: Path) -> None:
    out = write_report(night.ledger, night.ws, night.contract)
    page = out.read_text()
    assert (night.run_dir / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(
        r"""(src|href)\s*=\s*["']?(https?:)?//""", page
    )  # nothing fetched from a network
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "no chromium here (make test installs it on Debian as root: scripts/ensure-chromium)"
        )
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-extensions", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]  # fmt: skip
    shot = tmp_path / "shot.png"
    proc = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,2000", out.as_uri()],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    dom = subprocess.run(
        [*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    )
    console = [ln for ln in dom.stderr.splitlines() + proc.stderr.splitlines() if "CONSOLE" in ln]
    assert console == []  # the page logged nothing: no script error, no broken image
    rows = re.findall(r"<tr class=\"exp ", dom.stdout)
    assert len(rows) == len(night.ledger.experiments()) == 5
    img = re.search(r"<img id=\"progress\"[^>]*>", dom.stdout)
    assert img and "broken" not in img.group(0) and "data:image/png;base64," in img.group(0)
    assert "wrong answer: boom" in dom.stdout  # the crash's log tail opens from its row
    assert "lower-the-offset" in dom.stdout and "OFFSET = 3.0" in dom.stdout  # the final diff


def test_the_reasoning_trail_json_and_status(night: Night) -> None:
    repo = night.ws.root
    trail = subprocess.run(
        [*CLI, "log", "n"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    blocks = trail.strip().split("\n\n")
    assert len(blocks) == 5
    assert (
        blocks[2].startswith("#2 keep  score 4 (Δ -6)")
        and "hypothesis: replayed from 02-lower" in blocks[2]
    )
    assert "files:      impl.py +1 -1" in blocks[2]
    # the candidate's sys.exit("wrong answer: boom") ends its call; the evaluator crashes on it
    assert "outcome:    exit code 1: wrong answer: boom" in blocks[3]
    data = json.loads(subprocess.run([*CLI, "status", "n", "--json"], cwd=repo, capture_output=True, text=True,
                                     check=True).stdout)  # fmt: skip
    assert data["baseline"] == 10 and data["best"] == 3 and data["counts"] == {
        "keep": 2, "discard": 1, "crash": 1, "refused": 0, "duplicate": 0}  # fmt: skip
    assert data["crashes"] == {"exit code 1": 1} and len(data["experiments"]) == 5
    same = json.loads(subprocess.run([*CLI, "report", "n", "--json"], cwd=repo, capture_output=True, text=True,
                                     check=True).stdout)  # fmt: skip
    assert same["experiments"] == data["experiments"]
    tsv = (night.run_dir / "results.tsv").read_text().splitlines()
    assert tsv[0] == "commit\tscore\tmemory_gb\tstatus\tdescription" and len(tsv) == 6


def test_accept_brings_the_result_as_one_commit_and_refuses_when_unsafe(night: Night) -> None:
    repo = night.ws.root
    (repo / "impl.py").write_text(IMPL + "# mine\n")  # a dirty tree
    refused = subprocess.run([*CLI, "accept", "n"], cwd=repo, capture_output=True, text=True)
    assert refused.returncode != 0 and "uncommitted changes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    git(repo, "checkout", "-q", "--", "impl.py")

    (repo / "NOTES.md").write_text("my own work, on main after the run started\n")
    git(repo, "add", "NOTES.md")
    git(repo, "commit", "-qm", "notes")
    before = git(repo, "rev-parse", "HEAD").strip()
    run_branch = git(repo, "rev-parse", "autoresearch/n").strip()
    ok = subprocess.run([*CLI, "accept", "n"], cwd=repo, capture_output=True, text=True, check=True)
    assert "accepted run n onto main" in ok.stdout
    assert (
        git(repo, "rev-parse", "HEAD~1").strip() == before
    )  # one commit on top of the user's branch
    assert (repo / "impl.py").read_text() == BETTER.replace("4.0", "3.0") and (
        repo / "NOTES.md"
    ).exists()
    msg = git(repo, "log", "-1", "--format=%B")
    assert msg.startswith("autoresearch n: score 10 → 3 (-7)") and "- #2 02-lower-the-offset" in msg
    assert (
        git(repo, "rev-parse", "autoresearch/n").strip() == run_branch
    )  # the run branch keeps its history
    again = subprocess.run([*CLI, "accept", "n"], cwd=repo, capture_output=True, text=True)
    assert again.returncode != 0 and "already holds" in again.stderr


def test_accept_refuses_a_branch_that_moved_in_a_conflicting_way(night: Night) -> None:
    repo = night.ws.root
    (repo / "impl.py").write_text(IMPL.replace("10.0", "7.0"))
    git(repo, "commit", "-qam", "my own tuning")
    head = git(repo, "rev-parse", "HEAD").strip()
    proc = subprocess.run([*CLI, "accept", "n"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode != 0 and "conflicts with its result (impl.py)" in proc.stderr
    assert (
        git(repo, "rev-parse", "HEAD").strip() == head and git(repo, "status", "--porcelain") == ""
    )


def test_the_live_view_in_a_pseudo_terminal(repo: Path, tmp_path: Path) -> None:
    patches = tmp_path / "patches"
    slow = BETTER + "\nimport time\ntime.sleep(4)\n"
    make_patch(patches, "01-slower-but-better.patch", "impl.py", IMPL, slow)
    make_patch(patches, "02-worse.patch", "impl.py", slow, slow.replace("4.0", "5.0"))
    args = ["run", "--edit", "impl.py", "--eval", "python bench.py", "--metric", "score", "--goal", "min",
            "--evaluator", "bench.py", "--budget", "60", "--agent", "replay", "--patches", str(patches),
            "--tag", "live"]  # fmt: skip
    main, sub = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.Popen([*CLI, *args], cwd=repo, stdin=sub, stdout=sub, stderr=sub, env=env)
    os.close(sub)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(main)
    screen = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", b"".join(chunks)).decode(errors="replace")
    assert proc.returncode == 0, screen[-3000:]
    # the experiment in flight against its budget, with its progress bar
    assert "in flight" in screen and "running" in screen and "/60 s" in screen and "━" in screen
    assert "best 4 (Δ -6 from the baseline 10)" in screen
    assert "1 keep · 0 discard · 0 crash" in screen and "1 keep · 1 discard · 0 crash" in screen
    assert "latest" in screen and "01-slower-but-better" in screen
    assert "report: " in screen and (repo / ".autoresearch" / "live" / "report.html").exists()


def test_without_a_terminal_the_run_prints_plain_lines(repo: Path, tmp_path: Path) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, BETTER)
    proc = subprocess.run([*CLI, "run", "--edit", "impl.py", "--eval", "python bench.py", "--metric", "score",
                           "--goal", "min", "--evaluator", "bench.py", "--agent", "replay", "--patches",
                           str(patches), "--tag", "plain"], cwd=repo, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "experiment 1: 01-lower" in proc.stderr
    assert "in flight" not in proc.stderr
