"""One core for a harness run's two processes (sandbox/cores.py): a lease goes to the least held
core, is exclusive across threads and processes, ends with its holder, and is never taken for
another machine's engine; on the real engine a one-CPU harness run's evaluator and the
candidate's worker run on the core leased for it, in a fresh container and in one made ahead,
and candidate code cannot move off it; a shared-mode run and a larger one float."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import docker
import pytest

from orchestrator.contract.model import Sandbox as Limits
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox import ContainerSpec, cores, warm
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import contract_for, make_patch, make_repo

CPUS = sorted(os.sched_getaffinity(0))


def _other_process_leases(folder: Path) -> str:
    """What another process (a second night, a Ray worker) is leased: flocks, not a table of ours."""
    probe = ("import sys; from pathlib import Path; from orchestrator.sandbox import cores; "
             "c = cores.lease(Path(sys.argv[1])); print(c.cpu if c else 'none')")  # fmt: skip
    return subprocess.run([sys.executable, "-c", probe, str(folder)], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent.parent).stdout.strip()  # fmt: skip


def test_each_lease_takes_the_least_held_core_and_ends_with_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "leases"
    first = [cores.lease(folder) for _ in CPUS]
    assert sorted(c.cpu for c in first if c) == CPUS  # one each while there are cores enough
    second = cores.lease(folder)  # more slots than cores: a core's second share
    assert second is not None and second.cpu in CPUS
    if len(CPUS) > 1:  # the core with one holder, not the one with two
        taken = cores.lease(folder)
        assert taken is not None and taken.cpu != second.cpu
        taken.release()
    second.release()
    rest = [cores.lease(folder) for _ in range(len(CPUS) * (cores.SHARES - 1))]
    assert None not in rest and cores.lease(folder) is None  # SHARES a core: the next floats
    assert _other_process_leases(folder) == "none"
    freed = first[0]
    assert freed is not None
    freed.release()  # its holder is gone: its share is free, and the least held core is that one
    assert _other_process_leases(folder) == str(freed.cpu)
    for c in [*first[1:], *rest]:
        c.release()  # type: ignore[union-attr]
    assert _other_process_leases(folder) == str(CPUS[-1])  # all free: the highest first


def test_slots_that_start_at_once_lease_different_cores(tmp_path: Path) -> None:
    for round_ in range(30):  # the choice is made under one lock: no two pick the same core
        folder = tmp_path / f"round-{round_}"
        gate = threading.Barrier(len(CPUS))
        got: list[cores.Core | None] = []

        def start(gate: threading.Barrier, got: list[cores.Core | None], folder: Path) -> None:
            gate.wait()
            got.append(cores.lease(folder))

        threads = [threading.Thread(target=start, args=(gate, got, folder)) for _ in CPUS]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(c.cpu for c in got if c) == CPUS, [c and c.cpu for c in got]
        for c in got:
            c.release()  # type: ignore[union-attr]


def test_an_engine_on_another_machine_gets_no_lease_of_ours() -> None:
    assert DockerSandbox().here  # the unix socket: this machine's cores
    remote = DockerSandbox(docker.DockerClient(base_url="tcp://127.0.0.1:9", version="1.41"))
    assert not remote.here
    spec = ContainerSpec(workspace=Path("/nonexistent"), command="true", budget_s=1,
                         limits=Limits(), one_core=True)  # fmt: skip
    with cores.onto(spec, here=True) as ours:
        assert ours.core in CPUS
    with cores.onto(spec, here=False) as theirs:
        assert theirs.core is None


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
    try:  # candidate code that would take every core (a neighbour's too)
        os.sched_setaffinity(0, range(os.cpu_count()))
    except OSError:
        pass
    return sorted(os.sched_getaffinity(0))
"""


@pytest.mark.skipif(len(CPUS) < 2, reason="on one core every process is on one core")
@pytest.mark.parametrize(("isolation", "cpus"), [("harness", 1), ("shared", 1), ("harness", 2)])
def test_a_one_cpu_harness_runs_processes_share_the_core_leased_for_it(
    tmp_path: Path,
    sandbox: DockerSandbox,
    monkeypatch: pytest.MonkeyPatch,
    isolation: str,
    cpus: int,
) -> None:
    folder = tmp_path / "leases"
    monkeypatch.setattr(cores, "FOLDER", folder)  # no other night's leases in the count
    went: list[dict[str, str]] = []  # the runs that went in containers made ahead
    real_go = warm.Warm.go
    monkeypatch.setattr(
        warm.Warm, "go", lambda self, env: (went.append(env), real_go(self, env))[1]
    )
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
    assert went, "no run went in a container made ahead"
    for e in exps:
        m = e.metrics
        if isolation == "shared" or cpus > 1:  # one process, or more than a core's time: floats
            assert m["trusted_cores"] == len(CPUS) == m["candidate_cores"], (e.id, m)
            continue
        assert m["trusted_cores"] == 1 and m["candidate_cores"] == 1, (e.id, m)
        assert m["candidate_core"] == m["trusted_core"] and m["trusted_core"] in CPUS, (e.id, m)
    held = [cores.lease(folder) for _ in range(len(CPUS) * cores.SHARES)]
    try:
        assert None not in held  # every lease ended with its container
    finally:
        for c in held:
            if c is not None:
                c.release()
