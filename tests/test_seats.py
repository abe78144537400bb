"""Containers made ahead (sandbox/warm.py, executors/seats.py), on the real engine: nothing runs
in one before its attempt lets it go; the attempt's own variables, files and clock are what
its evaluator sees; a seat whose folder changed under its mounts, or whose spec differs, is
never used; a night leaves no container and no folder behind."""

from __future__ import annotations

import io
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from orchestrator.contract.model import Sandbox as Limits
from orchestrator.executors.seats import Seat, mount_points
from orchestrator.folders import unpack
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox import ContainerSpec, Mount
from orchestrator.sandbox import warm as warm_module
from orchestrator.sandbox.cgroups import cpu_used
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, contract_for, make_patch, make_repo, our_containers

LIMITS = Limits(memory="128m", pids=64, cpus=1, tmpfs="16m")


def _spec(work: Path, command: str, env: dict[str, str]) -> ContainerSpec:
    return ContainerSpec(workspace=work, command=command, budget_s=20, limits=LIMITS, env=env,
                         labels={"autoresearch.run": "seats-test"})  # fmt: skip


def test_a_container_made_ahead_runs_nothing_until_it_goes_and_is_timed_from_there(
    sandbox: DockerSandbox, tmp_path: Path
) -> None:
    work = tmp_path / "ws"
    work.mkdir(mode=0o777)
    work.chmod(0o777)
    command = 'cat; echo "seen $X $(cat /workspace/candidate.txt)"; echo ran > /workspace/ran'
    made = warm_module.make(sandbox, _spec(work, command, {"X": "template"}))
    try:
        burn = "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"  # CPU before the go
        assert made.container.exec_run(["sh", "-c", burn]).exit_code == 0
        before = cpu_used(made.container.id)
        time.sleep(3)
        assert not (work / "ran").exists()  # only the gate runs: nothing of the command yet
        names = {p[-1] for p in made.container.top(ps_args="-o pid,comm")["Processes"]}
        assert names == {"docker-init", "sh"}, names  # the init and the shell at its gate: no `cat`
        (work / "candidate.txt").write_text("its-files\n")  # the attempt's files come now
        go = time.monotonic()
        result = sandbox.run(replace(_spec(work, command, {"X": "the attempt's"}), warm=made))
        took = time.monotonic() - go
    finally:
        warm_module.discard(sandbox, made)
    assert result.exit_code == 0, result.output
    assert "seen the attempt's its-files" in result.output  # its own variables and files
    # timed from the go (the attempt's own run, well under a second), not from the 3 s it waited;
    # `took` holds the removal too, which a loaded engine may make slow
    assert result.wall_s <= took and result.wall_s < 3, (result.wall_s, took)
    # nor charged with the CPU used before it went (a made-ahead container's boot and wait)
    assert before > 0.3 and result.cpu_s is not None and result.cpu_s < before / 2, (before, result)
    assert (work / "ran").exists()  # `cat` met the end of its input: nothing held it open
    assert our_containers(sandbox.client, **{"autoresearch.run": "seats-test"}) == []


def test_a_seat_is_used_only_for_its_spec_and_untouched_mount_points(tmp_path: Path) -> None:
    work, snap = tmp_path / "ws", tmp_path / "snapshot"
    work.mkdir()
    snap.mkdir()
    (snap / "bench.py").write_text("trusted\n")
    (work / "bench.py").write_text("")  # the mount point, made before the container started
    (work / "pkg" / "__pycache__").mkdir(parents=True)
    spec = replace(_spec(work, "true", {"X": "1"}), mounts=(Mount(snap / "bench.py", "/workspace/bench.py"),),
                   tmpfs={"/workspace/pkg/__pycache__": "rw,size=1m"})  # fmt: skip
    points = mount_points(spec)
    assert set(points) == {work / "bench.py", work / "pkg" / "__pycache__"}

    class Made:  # the container's side is not what this asks
        def __init__(self) -> None:
            self.spec, self.made = spec, time.monotonic()

        fits = warm_module.Warm.fits

    seat = Seat(key=None, held=None, warm=Made(), points=points)  # type: ignore[arg-type]
    assert seat.usable(replace(spec, env={"X": "2"})) is seat.warm  # other values: still its
    assert seat.usable(replace(spec, env={"Y": "2"})) is None  # other names
    assert seat.usable(replace(spec, tmpfs={})) is None  # another folder of modules
    assert seat.usable(replace(spec, env={"X": "a\nb"})) is None  # a value the gate cannot carry
    tree = _tar(
        {
            "bench.py": "the candidate's copy\n",
            "pkg/__pycache__/m.pyc": "bytes",
            "impl.py": "x = 1\n",
        }
    )
    unpack(tree, work, skip=frozenset(p.relative_to(work).as_posix() for p in points))
    assert (work / "impl.py").read_text() == "x = 1\n"  # the attempt's files arrive...
    assert (work / "bench.py").read_text() == ""  # ...never at a path the container mounted over
    assert not (work / "pkg" / "__pycache__" / "m.pyc").exists() and seat.intact()
    (work / "bench.py").unlink()  # gone: the container's mount would have gone with it
    assert not seat.intact() and seat.usable(spec) is None


def _tar(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("isolation", ["harness", "shared"])
def test_a_night_runs_its_attempts_in_containers_made_ahead_and_leaves_none(
    tmp_path: Path, sandbox: DockerSandbox, docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch, isolation: str,
) -> None:  # fmt: skip
    # each run 2 s: a seat is made in a fraction of that, so every run after the first has one
    bench = ("import os, time\nfrom impl import score\ntime.sleep(2)\n"
             "print('experiment', os.environ['AUTORESEARCH_EXPERIMENT'])\nprint(f'score: {score()}')\n")  # fmt: skip
    repo = make_repo(tmp_path / "p", {"impl.py": IMPL, "bench.py": bench})
    patches = tmp_path / "patches"
    for i in range(4):
        old = IMPL.replace("10.0", f"{10 - i}.0")
        make_patch(patches, f"{i}.patch", "impl.py", old, IMPL.replace("10.0", f"{9 - i}.0"))
    went: list[dict[str, str]] = []
    real_go = warm_module.Warm.go
    monkeypatch.setattr(
        warm_module.Warm, "go", lambda self, env: (went.append(env), real_go(self, env))[1]
    )
    contract = contract_for(
        patches, **{"evaluator.isolation": isolation, "budget.baseline_repeats": 2}
    )
    run = start_run(
        repo, isolation, contract, "test", sandbox, say=lambda _m: None, backoff=Backoff(0.1, 0.5)
    )
    run.execute()
    exps = run.ledger.experiments()
    assert [e.status for e in exps] == ["keep"] * 5, [(e.id, e.status, e.reason) for e in exps]
    for e in exps[1:]:
        assert f"experiment {e.id}\n" in (run.ledger.exp_dir(e.id) / "output.log").read_text()
    # every run but the first had a container made ahead, with its own experiment's number
    assert len(went) >= 4 and {env["AUTORESEARCH_EXPERIMENT"] for env in went} >= {"2", "3", "4"}
    assert our_containers(docker_client, **{"autoresearch.run": isolation}) == []
    assert not list((run.run_dir / "sandbox").glob("ahead-*"))
