"""Chaos: the orchestrator killed at the narrow windows and at random moments, then resumed.

A `git` on the PATH before the real one stands in for a power cut: at the chosen
`update-ref` (the run branch's creation, a candidate's freeze, a merge) it leaves
the ref's lock as git would, then SIGKILLs the orchestrator's process group.
Random SIGKILLs and SIGTERMs follow. The night must end as an uninterrupted one:
the same statuses, the same final tree, every keep merged once, and no
container, mount or lock left behind.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker

from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import BENCH, IMPL, contract_for, git, make_patch, make_repo, our_containers

SHIM = r"""#!/usr/bin/env python3
import os, signal, subprocess, sys
args = sys.argv[1:]
plan = os.environ.get("CHAOS_PLAN", "")
if plan and "update-ref" in args and os.path.exists(plan):
    want = open(plan).read().strip()
    ref = next((a for a in args if a.startswith("refs/")), "")
    hit = (want == "branch" and ref.startswith("refs/heads/") and "0" * 40 in args) \
        or (want == "freeze" and ref.startswith("refs/autoresearch/")) \
        or (want == "merge" and ref.startswith("refs/heads/") and "0" * 40 not in args)
    if hit:
        os.remove(plan)
        root = args[args.index("-C") + 1] if "-C" in args else "."
        lock = subprocess.run([os.environ["CHAOS_REAL_GIT"], "-C", root, "rev-parse", "--git-path", ref + ".lock"],
                              capture_output=True, text=True).stdout.strip()
        lock = lock if os.path.isabs(lock) else os.path.join(root, lock)
        os.makedirs(os.path.dirname(lock), exist_ok=True)
        open(lock, "w").close()
        os.utime(lock, (0, 0))  # as old as a lock left by a power cut last night
        os.killpg(os.getpgid(0), signal.SIGKILL)
os.execv(os.environ["CHAOS_REAL_GIT"], [os.environ["CHAOS_REAL_GIT"], *args])
"""
PATCHES = [("01-lower", "10.0", "4.0"), ("02-higher", "4.0", "7.0"), ("03-lowest", "4.0", "2.0"),
           ("04-higher-again", "2.0", "3.0")]  # fmt: skip
"""(name, the best it is written against, its value): keep, discard, keep, discard."""


def _patches(folder: Path) -> Path:
    for name, old, new in PATCHES:
        make_patch(
            folder, f"{name}.patch", "impl.py", IMPL.replace("10.0", old), IMPL.replace("10.0", new)
        )
    return folder


def _toml(patches: Path, path: Path) -> Path:
    path.write_text(
        '[implementation]\npaths = ["impl.py"]\n'
        + '[evaluator]\ncommand = "python bench.py"\npaths = ["bench.py"]\n'
        + '[metric]\nname = "score"\ngoal = "min"\n'
        + "[budget]\nseconds = 30\nparallel = 1\npipeline = 0\nbaseline_repeats = 1\n"
        + '[sandbox]\nmemory = "256m"\npids = 64\n'
        + f'[agent]\nkind = "replay"\npatches = "{patches}"\n'
    )
    return path


def _cli(repo: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "--repo", str(repo), *args],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


def _state(repo: Path, tag: str) -> tuple[list[tuple[int, str | None]], str, str]:
    from orchestrator.runs import read_run

    ledger, _c, _ws = read_run(repo, tag)
    statuses = [(e.id, e.status) for e in ledger.experiments()]
    return (
        statuses,
        git(repo, "show", f"autoresearch/{tag}:impl.py"),
        git(repo, "rev-list", "--count", f"main..autoresearch/{tag}").strip(),
    )


def test_kills_at_every_narrow_window_and_at_random_leave_the_same_night(
    tmp_path: Path, sandbox, docker_client: docker.DockerClient
) -> None:
    patches = _patches(tmp_path / "patches")
    reference = make_repo(tmp_path / "reference", {"impl.py": IMPL, "bench.py": BENCH})
    start_run(reference, "c", contract_for(patches, **{"budget.baseline_repeats": 1}), "test", sandbox,
              say=lambda _m: None, backoff=Backoff(0.1, 0.5)).execute()  # fmt: skip
    want = _state(reference, "c")

    repo = make_repo(tmp_path / "chaos", {"impl.py": IMPL, "bench.py": BENCH})
    contract = _toml(patches, tmp_path / "contract.toml")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "git").write_text(SHIM)
    (shims / "git").chmod(0o755)
    plan = tmp_path / "plan"
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}", "CHAOS_PLAN": str(plan),
           "CHAOS_REAL_GIT": shutil.which("git") or "git"}  # fmt: skip
    rng = random.Random(7)
    started = False
    for step in [
        "branch",
        "freeze",
        "merge",
        "random-kill",
        "random-term",
        "random-kill",
        "finish",
    ]:
        if step in ("branch", "freeze", "merge"):
            plan.write_text(step)
        args = ("resume", "c") if started else ("run", str(contract), "--tag", "c")
        proc = _cli(repo, env, *args)
        if step.startswith("random"):
            time.sleep(rng.uniform(0.3, 2.5))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL if step == "random-kill" else signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err, (step, err)
        started = started or (repo / ".autoresearch" / "c" / "ledger.sqlite").exists()
        if (
            step == "branch"
        ):  # killed while the branch was made: no run yet, and the tag still works
            assert not started, "a run folder was left by a kill before the run was made"
        assert not plan.exists() or step.startswith("random") or step == "finish", (
            f"{step} was never hit"
        )
    assert _state(repo, "c") == want
    assert our_containers(docker_client, **{"autoresearch.run": "c"}) == []
    assert not list((repo / ".git").rglob("*.lock"))
    mounts = Path("/proc/self/mounts").read_text()
    assert str(repo / ".autoresearch") not in mounts
