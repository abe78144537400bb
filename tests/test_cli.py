"""The `autoresearch` command as a user drives it: subprocesses, real engine, real git."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import docker

from tests.conftest import IMPL, git, make_patch, our_containers

CLI = [sys.executable, "-m", "orchestrator"]


def cli(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], cwd=repo, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"autoresearch {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        )
    return proc


def _patches(tmp_path: Path, n: int, body: str = "") -> Path:
    folder = tmp_path / "patches"
    for i in range(1, n + 1):
        make_patch(
            folder,
            f"{i:02d}-offset-{i}.patch",
            "impl.py",
            IMPL,
            IMPL.replace("10.0", f"{10 - i}.0") + body,
        )
    return folder


IN_TURN = ["--parallel", "1", "--pipeline", "0"]
"""One change at a time: the replay patches below were written in sequence."""

FLAGS = ["--edit", "impl.py", "--eval", "python bench.py", "--metric", "score", "--goal", "min",
         "--evaluator", "bench.py", "--budget", "60", "--agent", "replay"]  # fmt: skip


def test_run_from_flags_then_status(repo: Path, tmp_path: Path) -> None:
    patches = _patches(tmp_path, 2)
    out = cli(
        repo, "run", *FLAGS, "--patches", str(patches), "--tag", "nov28", "--max-experiments", "1"
    )
    assert "stopped: max experiments reached (1)" in out.stderr
    status = cli(repo, "status", "nov28").stdout
    assert (
        "run nov28 (min score): 2 keep, 0 discard, 0 crash, 0 refused; best 9 (baseline 10)"
        in status
    )
    assert "01-offset-1" in status and "02-offset-2" not in status
    assert cli(repo, "status").stdout.split() == ["nov28"]


def test_run_from_a_contract_file_with_flag_overrides(repo: Path, tmp_path: Path) -> None:
    patches = _patches(tmp_path, 1)
    (repo / "contract.toml").write_text(
        '[implementation]\npaths = ["impl.py"]\n[evaluator]\ncommand = "python bench.py"\npaths = ["bench.py"]\n'
        '[metric]\nname = "score"\ngoal = "max"\n[budget]\nseconds = 60\n'
        f'[agent]\nkind = "replay"\npatches = "{patches}"\n'
    )
    git(repo, "add", "contract.toml")
    git(repo, "commit", "-qm", "contract")
    cli(repo, "run", "contract.toml", "--tag", "c1")
    assert "discard" in cli(repo, "status", "c1").stdout  # goal max: 9 < 10
    cli(
        repo,
        "run",
        "contract.toml",
        "--tag",
        "c2",
        "--image",
        "autoresearch/python:3.11",
        "--hours",
        "1",
    )


def test_user_errors_are_one_line_without_traceback(repo: Path, tmp_path: Path) -> None:
    (repo / "bad.toml").write_text('[implementation]\npaths = ["impl.py"]\ncolour = 1\n')
    (repo / "runs-impl.toml").write_text(
        '[implementation]\npaths = ["impl.py"]\n[evaluator]\ncommand = "python impl.py"\n'
        '[metric]\nname = "score"\ngoal = "min"\n'
    )
    runs_impl = (
        "runs-impl.toml: (top level): evaluator.command runs the implementation file 'impl.py'"
    )
    cases = [
        (["doctor", "runs-impl.toml"], runs_impl),
        (["run", "runs-impl.toml", "--patches", str(_patches(tmp_path, 1))], runs_impl),
        (["run", "bad.toml"], "bad.toml: implementation.colour: Extra inputs are not permitted"),
        (["run", "missing.toml"], "missing.toml: no such contract file"),
        (["run", "--edit", "impl.py"], "no contract — give a contract file"),
        (["run", *FLAGS], "agent.patches: Field required"),
        (["resume", "nope"], "no run tagged 'nope'"),
        (
            ["run", *FLAGS, "--patches", str(_patches(tmp_path, 1)), "--image", "no/such:image"],
            "is not built",
        ),
    ]
    for args, fragment in cases:
        proc = cli(repo, *args, check=False)
        assert proc.returncode != 0, args
        assert fragment in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_doctor_says_what_is_ready(repo: Path) -> None:
    out = cli(repo, "doctor").stdout
    assert "ok   docker engine:" in out and "ok   image: autoresearch/python:3.11" in out
    agent = next(line for line in out.splitlines() if " agent image: " in line)
    ready = agent.startswith("ok   agent image: autoresearch/agent:latest")
    assert ready or "make agent-image" in agent, agent  # present, or how to build it
    gpus = next(line for line in out.splitlines() if " gpus: " in line)
    assert gpus.startswith(("ok   gpus: ", "--   gpus: 0 GPUs")), gpus  # counted, or said why not


def test_sigkill_mid_experiment_then_resume(
    repo: Path, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-worse.patch", "impl.py", IMPL, IMPL.replace("10.0", "11.0"))
    slow_better = IMPL.replace("10.0", "9.0") + "\nimport time\ntime.sleep(3)\n"
    make_patch(patches, "02-better-slow.patch", "impl.py", IMPL, slow_better)
    make_patch(
        patches, "03-stale.patch", "impl.py", IMPL, IMPL.replace("10.0", "1.0")
    )  # no longer applies
    proc = subprocess.Popen([*CLI, "run", *FLAGS, "--patches", str(patches), "--tag", "k", *IN_TURN], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    ledger = repo / ".autoresearch" / "k" / "ledger.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ledger.exists():
            try:
                with sqlite3.connect(ledger) as db:
                    row = db.execute("SELECT phase FROM experiment WHERE id = 2").fetchone()
            except sqlite3.OperationalError:  # the schema is not written yet
                row = None
            if (
                row
                and row[0] == "running"
                and our_containers(docker_client, **{"autoresearch.run": "k"})
            ):
                break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("experiment 2 never started")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert our_containers(
        docker_client, **{"autoresearch.run": "k"}
    )  # the dead run left one behind

    cli(repo, "resume", "k")
    with sqlite3.connect(ledger) as db:
        rows = db.execute("SELECT id, phase, status, merged FROM experiment ORDER BY id").fetchall()
    assert rows == [(0, "done", "keep", 0), (1, "done", "discard", 0), (2, "done", "keep", 1),
                    (3, "done", "refused", 0)]  # fmt: skip
    tsv = (repo / ".autoresearch" / "k" / "results.tsv").read_text().splitlines()
    assert [line.split("\t")[3] for line in tsv[1:]] == ["keep", "discard", "keep", "refused"]
    assert git(repo, "rev-list", "--count", "main..autoresearch/k").strip() == "1"  # merged once
    assert git(repo, "show", "autoresearch/k:impl.py") == slow_better
    assert our_containers(docker_client, **{"autoresearch.run": "k"}) == []
    cli(repo, "resume", "k")  # resuming a finished run changes nothing
    assert git(repo, "rev-list", "--count", "main..autoresearch/k").strip() == "1"


def test_sigterm_stops_every_slot_and_leaves_no_container(
    repo: Path, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Two experiments in flight in two slots; SIGTERM: both containers go, neither is blamed."""
    patches = _patches(tmp_path, 3, "\nimport time\ntime.sleep(60)\n")
    tag = f"term{os.getpid()}"  # containers are found by this label: unique to this test run
    proc = subprocess.Popen([*CLI, "run", *FLAGS, "--patches", str(patches), "--tag", tag, "--parallel", "2"],
                            cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while len(our_containers(docker_client, **{"autoresearch.run": tag})) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, (
                "two experiments never ran at once"
            )
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and f"autoresearch resume {tag}" in err, err
    assert time.monotonic() - t0 < 30
    assert our_containers(docker_client, **{"autoresearch.run": tag}) == []
    assert str(repo) not in Path("/proc/mounts").read_text()  # the capped workspaces were unmounted
    with sqlite3.connect(repo / ".autoresearch" / tag / "ledger.sqlite") as db:
        rows = db.execute("SELECT id, status FROM experiment WHERE id > 0").fetchall()
    assert rows and all(
        status is None for _, status in rows
    )  # interrupted, not crashed: resume reruns them


def test_init_writes_a_contract_that_validates_or_says_what_is_missing(repo: Path) -> None:
    missing = cli(repo, "init", check=False)  # no terminal to ask: the flag is required
    assert missing.returncode == 2 and "--edit is required" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    cli(
        repo,
        "init",
        "--edit",
        "impl.py",
        "--metric",
        "latency_ms",
        "--goal",
        "min",
        "--kind",
        "refactor",
    )
    direction = (repo / "autoresearch" / "direction.md").read_text()
    assert "simpler" in direction and "`latency_ms`" in direction
    assert "import impl as candidate" in (repo / "autoresearch" / "evaluate.py").read_text()
    again = cli(
        repo,
        "init",
        "--edit",
        "impl.py",
        "--metric",
        "m",
        "--goal",
        "min",
        "--kind",
        "ml",
        check=False,
    )
    assert again.returncode == 2 and "pass --force" in again.stderr  # nothing overwritten
    from orchestrator.contract.load import build_contract, read_contract_file

    contract = build_contract(read_contract_file(repo / "autoresearch.toml"), {}, "init")
    assert contract.evaluator.isolation == "harness" and contract.implementation.paths == [
        "impl.py"
    ]
    night = cli(
        repo, "run", "autoresearch.toml", "--agent", "none", "--tag", "skel", "--budget", "60"
    )
    assert "stopped: the agent has nothing more to propose" in night.stderr  # the skeleton measures
