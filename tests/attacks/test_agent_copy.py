"""The agent's copy: what a coding CLI leaves in it refuses that proposal, never the night.

One night of the command agent in its container (runc, then runsc): five proposals each
leave something no proposal can be — a FIFO, a socket, an uncommitted nested repository, a
folder where a file was, a copy filled past `agent.disk` — then an honest one. Each of the
five is refused with its reason, the honest one is kept, and nothing of the copies is left
mounted or on disk. Before the fix, the first four ended the night (a special file or a
git error while copying back), and the fifth wrote as much as it liked on the host's disk.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.agents.copy import Copies
from tests.conftest import IMPL, contract_for, git

IMAGE = "autoresearch/python:3.11"
CLI = """
import os, re, socket
n = int(os.environ["AUTORESEARCH_EXPERIMENT"])
if n == 1:
    os.mkfifo("impl_pipe")
elif n == 2:
    socket.socket(socket.AF_UNIX).bind("impl.sock")
elif n == 3:  # `git init sub`, nothing committed: what git needs to call it a repository
    for d in ("sub/.git/objects", "sub/.git/refs/heads"):
        os.makedirs(d)
    open("sub/.git/HEAD", "w").write("ref: refs/heads/main\\n")
    open("sub/work.py", "w").write("x = 1\\n")
elif n == 4:
    os.remove("impl.py")
    os.makedirs("impl.py")
    open("impl.py/inside.py", "w").write("x = 1\\n")
elif n == 5:
    with open("junk.bin", "wb") as f:
        try:
            for _ in range(256):
                f.write(b"x" * 1024**2)
                f.flush()
        except OSError as e:
            print("the cap held:", e)
if n != 4:
    impl = re.sub(r"OFFSET = [0-9.]+", f"OFFSET = {10.0 - n}", open("impl.py").read())
    open("impl.py", "w").write(impl)
print(f"DESCRIPTION: attack {n}")
"""
REASONS = {
    1: "the agent left a FIFO at impl_pipe",
    2: "the agent left a socket at impl.sock",
    3: "the agent left a nested git repository at sub/",
    4: "",  # read back as it is, then judged by the usual rules (it crashes: no impl module)
    5: "the agent filled its copy: agent.disk = 64 MiB",
}


@pytest.fixture(scope="module", params=["runc", "runsc"])
def runtime(request, docker_client: docker.DockerClient) -> str:  # type: ignore[no-untyped-def]
    if request.param not in (docker_client.info().get("Runtimes") or {}):
        pytest.skip(f"{request.param} is not registered with this Docker engine")
    return str(request.param)


def _mounts_under(folder: Path) -> list[str]:
    lines = Path("/proc/self/mounts").read_text().splitlines()
    return [ln.split()[1] for ln in lines if ln.split()[1].startswith(str(folder))]


def test_what_a_cli_leaves_in_its_copy_refuses_that_proposal_and_the_night_goes_on(
    repo: Path, start: Any, runtime: str
) -> None:
    (repo / "agent_cli.py").write_text(CLI)
    git(repo, "add", "agent_cli.py")
    git(repo, "commit", "-qm", "the attacking CLI")
    agent = {"kind": "command", "image": IMAGE, "command": "python3 agent_cli.py", "services": [],
             "runtime": runtime, "disk": "64m", "memory": "512m", "timeout_s": 60}  # fmt: skip
    run = start(contract_for(Path("x"), agent=agent, **{"budget.max_experiments": 6}))
    run.execute()
    exps = {e.id: e for e in run.ledger.experiments()}
    for n, reason in REASONS.items():
        e = exps[n]
        gvisor_kept_it = runtime == "runsc" and n in (1, 2)  # its FIFOs and sockets stay inside
        if not reason or gvisor_kept_it:
            assert e.phase == "done", (n, e.phase)  # recorded; the night went on
            continue
        assert e.status == "refused" and reason in e.reason, (n, e.status, e.reason)
    assert exps[6].status == "keep", (exps[6].status, exps[6].reason)
    assert git(repo, "show", "autoresearch/t:impl.py") == IMPL.replace("10.0", "4.0")
    box = run.ledger.dir / "agent"
    deadline = time.monotonic() + 10  # the copies are dropped in the background
    while (_mounts_under(box) or any(box.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _mounts_under(box) == [] and list(box.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a loop-mounted filesystem needs root")
def test_the_copy_is_a_filesystem_of_exactly_its_cap(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "impl.py").write_text(IMPL)
    copies = Copies(tmp_path / "box", say=lambda _: None)
    with copies.hold(scratch, 32 * 1024**2) as copy:
        assert copy.enforced and (copy.path / ".git").is_dir()
        with pytest.raises(OSError, match="No space left"), open(copy.path / "fill", "wb") as f:
            for _ in range(64):
                f.write(b"x" * 1024**2)
                f.flush()
                os.fsync(f.fileno())
