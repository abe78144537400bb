"""The Ray executor on a real Ray cluster of several nodes on this machine, real Docker under it.

One head and one more node, each advertising one sandbox slot; later a third
node with two (fake) GPUs and two slots. The nodes share this machine's Docker
engine, so every container any node starts is visible here. The order of the
tests matters: the node killed in the third test is the second node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from orchestrator.contract.model import Contract
from orchestrator.ledger import Ledger
from orchestrator.night import Backoff
from orchestrator.night.driver import Night
from orchestrator.runs import start_run
from tests.conftest import contract_for, make_patch, make_repo, our_containers
from tests.ray_cluster import Cluster

REPO = Path(__file__).resolve().parents[1]

PARTS = [f"f{i}.py" for i in range(1, 7)]
BENCH = """import os, sys, time
sys.dont_write_bytecode = True
import f1, f2, f3, f4, f5, f6

time.sleep(float(os.environ.get("SLEEP", "0")) + getattr(f6, "SLOW", 0))
gpus = os.environ.get("TEST_GPUS")
if gpus is not None:
    print(f"gpu_id: {gpus}")
print(f"score: {min(m.X for m in (f1, f2, f3, f4, f5, f6)):.6f}")
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
    c.add("test_second", slots=1)
    try:
        yield c
    finally:
        ray.shutdown()
        c.stop()


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {**{p: "X = 10\n" for p in PARTS}, "bench.py": BENCH})


def _patches(folder: Path) -> Path:
    # The score is the least X and one change lowers it, so each outcome is the same whichever
    # best a candidate forked from and whichever ran beside it: timing cannot change the night.
    edits = [("f1.py", "X = 10  # same\n"),          # no gain: discard
             ("f2.py", "X = 20\n"),                  # no gain: discard
             ("f3.py", "X = = 1\n"),                 # crash
             ("f4.py", "X = 3\n"),                   # keep
             ("f5.py", "X = 10  # same\n"),          # no gain: discard
             ("f6.py", "X = 30\n")]  # fmt: skip    # no gain: discard
    for i, (path, new) in enumerate(edits, 1):
        make_patch(folder, f"{i:02d}.patch", path, "X = 10\n", new)
    return folder


def _contract(patches: Path, **over: object) -> Contract:
    return contract_for(patches, **{"implementation.paths": PARTS, "budget.baseline_repeats": 1,
                                    "budget.parallel": 2, "budget.pipeline": 1, **over})  # fmt: skip


def _start(repo: Path, contract: Contract, sandbox: object, tag: str) -> Night:
    return start_run(repo, tag, contract, "test", sandbox, say=lambda _m: None,  # type: ignore[arg-type]
                     backoff=Backoff(0.1, 0.5))  # fmt: skip


def _no_work_folders_left(tag: str) -> None:
    """The nodes' work folders of run `tag` (they share this machine's /tmp): unmounted, removed."""
    box = Path(tempfile.gettempdir()) / f"autoresearch-ray-{os.getuid()}" / tag / "sandbox"
    deadline = time.monotonic() + 15  # a worker removes its folders just after its result
    while list(box.glob("*")) or f"/{tag}/sandbox/" in Path("/proc/mounts").read_text():
        assert time.monotonic() < deadline, (list(box.glob("*")), Path("/proc/mounts").read_text())
        time.sleep(0.2)


def _decided(repo: Path, tag: str) -> dict[int, dict[str, object]]:
    lines = (repo / ".autoresearch" / tag / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return {e["experiment"]: e for e in events if e.get("event") == "decided"}


def test_six_experiments_spread_over_both_nodes_and_end_as_they_do_locally(
    tmp_path: Path, cluster: Cluster, sandbox, docker_client
) -> None:
    patches = _patches(tmp_path / "patches")
    outcomes = {}
    for executor in ("local", "ray"):
        repo = _repo(tmp_path / executor)
        over: dict[str, object] = {"sandbox.env": {"SLEEP": "1"}}
        if executor == "ray":
            over |= {"executor.kind": "ray", "executor.address": cluster.address}
        run = _start(repo, _contract(patches, **over), sandbox, f"ray-spread-{executor}")
        assert run.execute() == "the agent has nothing more to propose"
        exps = Ledger(repo / ".autoresearch" / run.ws.tag).experiments()
        best = [e for e in exps if e.holds_best][-1]
        tree = {p: run.ws.git("show", f"{run.ws.best()}:{p}") for p in PARTS}
        outcomes[executor] = ([(e.id, e.status) for e in exps], best.metric, tree)
        if executor == "ray":
            nodes = {str(e["node"]) for e in _decided(repo, run.ws.tag).values()}
            assert len(nodes) == 2, nodes  # both slots were used
            assert {e.node for e in exps} == nodes  # the ledger says where each ran
            assert {n.split("/")[1] for n in nodes} == set(cluster.nodes().values())
            assert our_containers(docker_client, **{"autoresearch.run": run.ws.tag}) == []
    statuses, metric, _ = outcomes["ray"]
    assert outcomes["ray"] == outcomes["local"]
    assert statuses == [(0, "keep"), (1, "discard"), (2, "discard"), (3, "crash"), (4, "keep"),
                        (5, "discard"), (6, "discard")]  # fmt: skip
    assert metric == 3.0


def test_doctor_lists_every_node_with_its_slots_engine_and_image(cluster: Cluster) -> None:
    from orchestrator.contract.model import DEFAULT_IMAGE
    from orchestrator.doctor import cluster_checks
    from orchestrator.executors.config import RayExecutorConfig

    checks = cluster_checks(cluster.address, DEFAULT_IMAGE, RayExecutorConfig().node_sandbox)
    lines = [c.line() for c in checks]
    assert lines[0].startswith("ok   ray: 2 node(s) with sandbox slots"), lines
    nodes = [line for line in lines if line.startswith("ok   node ")]
    assert len(nodes) == 2 and all("1 slot(s), 0 GPU(s), engine and" in n for n in nodes), lines
    missing = cluster_checks(
        cluster.address, "autoresearch/not-built:0", RayExecutorConfig().node_sandbox
    )
    assert sum("image autoresearch/not-built:0 missing" in c.detail for c in missing) == 2

    from click.testing import CliRunner

    from orchestrator.cli import main

    out = CliRunner().invoke(
        main, ["doctor", "--executor", "ray", "--ray-address", cluster.address]
    )
    assert out.exit_code == 0 and out.output.count("ok   node ") == 2, out.output


def test_a_timeout_and_a_cancel_stop_the_container_on_its_node(
    tmp_path: Path, cluster: Cluster, sandbox, docker_client
) -> None:
    from orchestrator.errors import Cancelled, InfraError
    from orchestrator.executors.attempt import Attempt

    make_patch(tmp_path / "slow", "1.patch", "f6.py", "X = 10\n", "X = 10\nSLOW = 120\n")
    over = {
        "executor.kind": "ray",
        "executor.address": cluster.address,
        "budget.max_experiments": 1,
    }
    timed = _start(_repo(tmp_path / "timeout"), _contract(tmp_path / "slow", **over, **{"budget.seconds": 4}),
                   sandbox, "ray-timeout")  # fmt: skip
    timed.execute()
    exp = timed.ledger.get(1)
    assert exp is not None and exp.status == "crash" and "budget" in exp.reason, exp.reason
    assert exp.wall_s is not None and exp.wall_s < 20
    assert our_containers(docker_client, **{"autoresearch.run": "ray-timeout"}) == []

    run = _start(
        _repo(tmp_path / "cancel"), _contract(tmp_path / "slow", **over), sandbox, "ray-cancel"
    )
    ended: list[BaseException] = []

    def night() -> None:
        try:
            run.execute()
        except BaseException as e:
            ended.append(e)

    thread = threading.Thread(target=night, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not any((c.attrs.get("Labels") or {}).get("autoresearch.experiment") == "1"
                  for c in our_containers(docker_client, **{"autoresearch.run": "ray-cancel"})):  # fmt: skip
        assert time.monotonic() < deadline and thread.is_alive(), "experiment 1 never started"
        time.sleep(0.2)
    t0 = time.monotonic()
    run.cancel()  # what Ctrl-C or SIGTERM does to a night
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - t0 < 15
    assert len(ended) == 1 and isinstance(ended[0], Cancelled), ended
    assert our_containers(docker_client, **{"autoresearch.run": "ray-cancel"}) == []
    exp = run.ledger.get(1)
    assert exp is not None and exp.status is None  # cancelled, never blamed
    _no_work_folders_left("ray-cancel")

    # A cancel that lands while an attempt is being sent: the task must not run on unseen.
    ex = run.executor
    attempt = Attempt(experiment=9, tree=run.ws.archive(run.ws.best()), contract=run.contract,
                      labels={"autoresearch.run": "ray-cancel", "autoresearch.experiment": "9"})  # fmt: skip
    ex.cancel()
    with pytest.raises(InfraError, match="cancelled"):  # refused until reopened
        ex.run(attempt)
    ex.reopen()
    bundle = ex._trusted_bundle  # type: ignore[attr-defined]

    def cancelled_while_sent(contract: Contract) -> object:
        out = bundle(contract)
        ex.cancel()
        return out

    ex._trusted_bundle = cancelled_while_sent  # type: ignore[attr-defined]
    t0 = time.monotonic()
    with pytest.raises(InfraError, match="cancelled while its Ray task was being sent"):
        ex.run(attempt)
    assert time.monotonic() - t0 < 15
    ex.reopen()
    assert our_containers(docker_client, **{"autoresearch.run": "ray-cancel"}) == []
    _no_work_folders_left("ray-cancel")


def test_a_lost_node_is_one_infrastructure_error_and_its_experiment_reruns_on_the_head(
    tmp_path: Path, cluster: Cluster, sandbox, docker_client
) -> None:
    repo = _repo(tmp_path)
    patches = _patches(tmp_path / "patches")
    tag = "ray-lost"
    contract = _contract(patches, **{"executor.kind": "ray", "executor.address": cluster.address,
                                     "sandbox.env": {"SLEEP": "6"}, "budget.max_experiments": 2,
                                     "budget.pipeline": 0})  # fmt: skip
    run = _start(repo, contract, sandbox, tag)
    second = cluster.nodes()["test_second"]
    result: list[object] = []
    night = threading.Thread(target=lambda: result.append(run.execute()), daemon=True)
    night.start()
    deadline = time.monotonic() + 90
    victim = None
    while victim is None:  # an experiment's container on the second node
        assert time.monotonic() < deadline and night.is_alive(), (
            "no experiment reached the second node"
        )
        for c in our_containers(docker_client, **{"autoresearch.run": tag}):
            labels = c.attrs.get("Labels") or {}  # sparse: no inspect racing a removal
            if (
                second in labels.get("autoresearch.node", "")
                and labels["autoresearch.experiment"] != "0"
            ):
                victim = int(labels["autoresearch.experiment"])
        time.sleep(0.2)
    cluster.kill("test_second")
    night.join(timeout=120)
    assert not night.is_alive() and result == ["max experiments reached (2)"]
    ledger = Ledger(repo / ".autoresearch" / tag)
    exp = ledger.get(victim)
    assert exp is not None and exp.infra_retries == 1 and exp.status in ("keep", "discard", "crash")
    assert exp.status != "crash"  # the lost run is never the candidate's failure
    infra = [e for e in ledger.events("infra") if e["experiment"] == victim]
    assert len(infra) == 1 and "lost the Ray task" in infra[0]["detail"], infra
    head = cluster.nodes()["test_head"]
    decided = _decided(repo, tag)
    assert head in str(decided[victim]["node"])  # the rerun, on the node still alive
    assert all(e.phase == "done" for e in ledger.experiments())
    assert our_containers(docker_client, **{"autoresearch.run": tag}) == []
    _no_work_folders_left(tag)  # the lost worker's too


def test_each_gpu_experiment_gets_exactly_the_gpu_ray_assigned(
    tmp_path: Path, cluster: Cluster, sandbox, docker_client
) -> None:
    cluster.add("test_gpus", slots=2, gpus=2)
    repo = _repo(tmp_path)
    patches = _patches(tmp_path / "patches")
    contract = _contract(patches, **{"executor.kind": "ray", "executor.address": cluster.address,
                                     "executor.node_sandbox": "tests.ray_nodes:GpuShowingSandbox",
                                     "sandbox.gpus": 1, "sandbox.env": {"SLEEP": "2"},
                                     "budget.max_experiments": 4})  # fmt: skip
    run = _start(repo, contract, sandbox, "ray-gpus")
    assert (
        run.executor.slots(contract) == 2
    )  # only the GPU node fits a 1-GPU experiment: its two slots
    run.execute()
    ledger = Ledger(repo / ".autoresearch" / "ray-gpus")
    decided = _decided(repo, "ray-gpus")
    gpu_node = cluster.nodes()["test_gpus"]
    exps = ledger.experiments()
    assert len(exps) == 5
    for e in exps:
        given = decided[e.id]["gpus"]
        assert gpu_node in str(decided[e.id]["node"])
        assert isinstance(given, list) and len(given) == 1 and given[0] in ("0", "1"), given
        if e.status != "crash":  # the container saw exactly that GPU
            assert e.metrics["gpu_id"] == float(given[0]), (e.id, e.metrics, given)
    pairs = [(a, b) for a in exps for b in exps if a.id < b.id and a.status != "crash" != b.status]
    overlapping = [
        (a, b)
        for a, b in pairs
        if ledger.concurrent_with(a.id) and b.id in ledger.concurrent_with(a.id)
    ]
    assert overlapping, "the two slots never ran at once"
    assert all(a.metrics["gpu_id"] != b.metrics["gpu_id"] for a, b in overlapping)
    assert our_containers(docker_client, **{"autoresearch.run": "ray-gpus"}) == []


def test_the_local_executor_never_imports_ray(tmp_path: Path) -> None:
    script = f"""
import sys
from pathlib import Path
from tests.conftest import contract_for, make_patch, make_repo, IMPL, BENCH
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
import orchestrator.cli, orchestrator.morning.summary, orchestrator.morning.report, orchestrator.morning.verify
repo = make_repo(Path({str(tmp_path)!r}) / "p", {{"impl.py": IMPL, "bench.py": BENCH}})
make_patch(repo.parent / "patches", "1.patch", "impl.py", IMPL, IMPL.replace("10.0", "9.0"))
run = start_run(repo, "t", contract_for(repo.parent / "patches", **{{"budget.max_experiments": 0,
                "budget.baseline_repeats": 1}}), "test", DockerSandbox(), say=lambda m: None)
print(run.execute())
print("ray imported" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "no ray")
"""
    # what is asserted is the import, not the time: a loaded box gets all the time it needs
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["max experiments reached (0)", "no ray"], out.stdout


def test_no_cluster_at_the_address_is_said_before_ray_is_imported(tmp_path: Path) -> None:
    """A HOST:PORT nobody listens on fails before the Ray executor's module (and Ray) loads."""
    from tests.ray_cluster import free_port

    script = f"""
import sys
from pathlib import Path
from tests.conftest import contract_for, make_repo, IMPL, BENCH
from orchestrator.errors import UserError
from orchestrator.runs import start_run
repo = make_repo(Path({str(tmp_path)!r}) / "p", {{"impl.py": IMPL, "bench.py": BENCH}})
contract = contract_for(repo, **{{"agent": {{"kind": "none"}}, "executor": {{"kind": "ray",
                        "address": "127.0.0.1:{free_port()}"}}}})
try:
    start_run(repo, "t", contract, "test", None, say=lambda m: None)
except UserError as e:
    print(e.message)
print("ray imported" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "no ray")
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    said, imported = out.stdout.splitlines()[-2:]
    assert said.startswith("no Ray cluster answers at 127.0.0.1:") and "ray start --head" in said
    assert imported == "no ray", out.stdout
    assert not (tmp_path / "p" / ".autoresearch").exists()


def test_no_cluster_at_the_address_is_one_line_in_seconds(tmp_path: Path) -> None:
    from tests.conftest import BENCH, IMPL
    from tests.ray_cluster import free_port

    repo = make_repo(tmp_path / "p", {"impl.py": IMPL, "bench.py": BENCH})
    make_patch(tmp_path / "patches", "1.patch", "impl.py", IMPL, IMPL.replace("10.0", "9.0"))
    cmd = [str(Path(sys.executable).with_name("autoresearch")), "run", "--edit", "impl.py",
           "--eval", "python bench.py", "--metric", "score", "--goal", "min", "--agent", "replay",
           "--patches", str(tmp_path / "patches"), "--executor", "ray",
           "--ray-address", f"127.0.0.1:{free_port()}"]  # fmt: skip
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and time.monotonic() - t0 < 20, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Ray cluster answers at 127.0.0.1:" in lines[0], out.stderr
    assert "ray start --head" in lines[0]
    assert not (repo / ".autoresearch").exists()  # nothing half-made to trip over next time
    branches = subprocess.run(["git", "-C", str(repo), "branch"], capture_output=True, text=True)
    assert "autoresearch/" not in branches.stdout


def test_a_node_never_takes_trusted_files_from_a_folder_others_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/tmp is shared: another user of a node must not plant the evaluator a run will mount."""
    from orchestrator.errors import InfraError
    from orchestrator.executors import ray_node as ray_executor

    monkeypatch.setattr(ray_executor.tempfile, "gettempdir", lambda: str(tmp_path))
    base = tmp_path / f"autoresearch-ray-{os.getuid()}"
    base.mkdir(mode=0o777)
    base.chmod(0o777)  # made by someone else, open to all
    with pytest.raises(InfraError, match="not a private folder"):
        ray_executor._node_root("t")
    base.rmdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    base.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InfraError, match="not a private folder"):
        ray_executor._node_root("t")
    base.unlink()
    assert ray_executor._node_root("t") == base / "t"
    assert base.stat().st_mode & 0o777 == 0o700
