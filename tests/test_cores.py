"""One core for a small experiment's processes (sandbox/cores.py, harness cores.py): a lease is
exclusive across processes and ends with its holder; on the real engine a one-CPU experiment's
evaluator and the candidate's worker run on the one core leased for it, in a fresh container
and in one made ahead, and a larger one floats."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox import cores
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import contract_for, make_patch, make_repo

CPUS = sorted(os.sched_getaffinity(0))


def test_a_core_is_leased_to_one_holder_at_a_time_and_freed_with_it(tmp_path: Path) -> None:
    folder = tmp_path / "leases"
    held = [cores.lease(folder) for _ in CPUS]
    assert sorted(c.cpu for c in held if c) == CPUS  # each core once
    assert cores.lease(folder) is None  # none free: the container floats
    held[0].release()  # type: ignore[union-attr]
    again = cores.lease(folder)
    assert again is not None and again.cpu == held[0].cpu  # type: ignore[union-attr]
    # another process sees the leases (a second night, a Ray worker): flock, not a table of ours
    probe = "import sys; from pathlib import Path; from orchestrator.sandbox import cores; " \
            "c = cores.lease(Path(sys.argv[1])); print(c.cpu if c else 'none')"  # fmt: skip
    other = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True,
                           text=True, check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    assert other.stdout.strip() == "none"
    for c in [again, *held[1:]]:
        c.release()  # type: ignore[union-attr]
    other = subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True,
                           text=True, check=True, cwd=Path(__file__).parent.parent)  # fmt: skip
    assert other.stdout.strip() == str(CPUS[-1])


def test_leases_are_not_taken_from_a_folder_another_user_could_plant(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert cores.lease(shared) is None
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert cores.lease(tmp_path / "link") is None


EVALUATOR = """import os
from impl import score, where
print(f"trusted_cores: {len(os.sched_getaffinity(0))}")
print(f"trusted_core: {min(os.sched_getaffinity(0))}")
print(f"candidate_cores: {len(where())}")
print(f"candidate_core: {min(where())}")
print(f"score: {score()}")
"""
IMPL = """import os
OFFSET = 10.0


def score():
    return OFFSET


def where():
    return sorted(os.sched_getaffinity(0))
"""


@pytest.mark.parametrize(("isolation", "cpus"), [("harness", 1), ("shared", 1), ("harness", 2)])
def test_a_one_cpu_experiments_processes_share_the_core_leased_for_it(
    tmp_path: Path, sandbox: DockerSandbox, isolation: str, cpus: int
) -> None:
    if cpus > len(CPUS):
        pytest.skip(f"a {cpus}-CPU sandbox needs {cpus} cores")
    repo = make_repo(tmp_path / "p", {"impl.py": IMPL, "bench.py": EVALUATOR})
    patches = tmp_path / "patches"
    for i in range(2):  # the runs after the first go in containers made ahead
        make_patch(patches, f"{i}.patch", "impl.py", IMPL.replace("10.0", f"{10 - i}.0"),
                   IMPL.replace("10.0", f"{9 - i}.0"))  # fmt: skip
    contract = contract_for(patches, **{"evaluator.isolation": isolation, "sandbox.cpus": cpus,
                                        "budget.baseline_repeats": 2})  # fmt: skip
    run = start_run(repo, isolation, contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    exps = run.ledger.experiments()
    assert [e.status for e in exps] == ["keep"] * 3, [(e.id, e.status, e.reason) for e in exps]
    for e in exps:
        m = e.metrics
        if cpus > 1:  # more than a core's time: its processes float over the machine's cores
            assert m["trusted_cores"] == len(CPUS) == m["candidate_cores"], (e.id, m)
            continue
        assert m["trusted_cores"] == 1 and m["candidate_cores"] == 1, (e.id, m)
        assert m["candidate_core"] == m["trusted_core"] and m["trusted_core"] in CPUS, (e.id, m)
    held = [cores.lease() for _ in CPUS]
    try:
        assert None not in held  # every lease ended with its container
    finally:
        for c in held:
            if c is not None:
                c.release()
