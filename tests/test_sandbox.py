"""The Docker sandbox under attack: each test tries to break one promise of DESIGN.md."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import docker
import pytest
import requests

from orchestrator.contract.model import Sandbox as Limits
from orchestrator.errors import InfraError
from orchestrator.sandbox import LABEL, ContainerSpec
from orchestrator.sandbox.docker import DEADLINE_LABEL, OWNER_LABEL, DockerSandbox, owner_id
from tests.conftest import our_containers

LIMITS = Limits(memory="128m", pids=64, cpus=1, tmpfs="16m")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir(mode=0o777)
    w.chmod(0o777)
    return w


def spec(work: Path, command: str, budget: float = 20, **kw: object) -> ContainerSpec:
    return ContainerSpec(workspace=work, command=command, budget_s=budget, limits=kw.pop("limits", LIMITS),
                   labels={"autoresearch.run": "sandbox-test"}, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_hardening_reaches_the_engine(sandbox: DockerSandbox, work: Path) -> None:
    c = sandbox.create(spec(work, "true"))
    try:
        host, cfg = c.attrs["HostConfig"], c.attrs["Config"]
    finally:
        c.remove(force=True)
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges=true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["NetworkMode"] == "none"
    assert host["Memory"] == host["MemorySwap"] == 128 * 1024**2
    assert host["PidsLimit"] == 64 and host["NanoCpus"] == 10**9
    assert "size=16777216" in host["Tmpfs"]["/tmp"]
    assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"]["max-size"]
    assert host["Init"] is True and host["IpcMode"] == "private"
    assert cfg["User"] == "10001:10001"
    assert all("docker.sock" not in (m.get("Source") or "") for m in host.get("Mounts") or [])
    assert {k.split("=")[0] for k in cfg["Env"]} <= {
        "PATH",
        "HOME",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "LANG",
    }


def test_the_view_from_inside(sandbox: DockerSandbox, work: Path) -> None:
    r = sandbox.run(spec(work, "id -u; id -g; id -G; ls /sys/class/net; ps -e --no-headers | wc -l; "
                              "ls /var/run/docker.sock 2>&1; touch /x 2>&1; echo ok"))  # fmt: skip
    lines = r.output.splitlines()
    assert lines[:4] == [
        "10001",
        "10001",
        "10001",
        "lo",
    ]  # non-root uid AND gid; no interface but lo
    assert int(lines[4]) <= 5  # init, sh, ps, wc: no host process is visible
    assert "No such file" in lines[5]
    assert "Read-only file system" in lines[6]
    assert r.exit_code == 0


def test_memory_bomb_is_recorded_as_oom(sandbox: DockerSandbox, work: Path) -> None:
    r = sandbox.run(spec(work, "python -c 'x = bytearray(512 * 2**20)'"))
    assert r.oom_killed and r.exit_code == 137 and not r.timed_out


def test_fork_bomb_hits_the_pids_limit(sandbox: DockerSandbox, work: Path) -> None:
    bomb = "python -c \"import os,time\nn=0\nwhile n<500:\n  try:\n    os.fork() or time.sleep(30)\n    n+=1\n  except OSError as e:\n    print('refused', n, e.strerror); break\""
    r = sandbox.run(spec(work, bomb, budget=10))
    assert "refused" in r.output and "Resource temporarily unavailable" in r.output


def test_daemons_and_background_children_die_with_the_container(sandbox: DockerSandbox, work: Path,
                                                                 docker_client: docker.DockerClient) -> None:  # fmt: skip
    t0 = time.monotonic()
    r = sandbox.run(
        spec(work, "setsid sh -c 'trap \"\" TERM; sleep 1000' & trap '' TERM; sleep 1000", budget=2)
    )
    assert r.timed_out and time.monotonic() - t0 < 2 + 5
    r = sandbox.run(spec(work, "nohup sleep 1000 >/dev/null 2>&1 & echo left-behind"))
    assert r.exit_code == 0 and not r.timed_out
    assert our_containers(docker_client, **{"autoresearch.run": "sandbox-test"}) == []


def test_an_output_flood_is_capped_with_the_tail_kept(sandbox: DockerSandbox, work: Path) -> None:
    r = sandbox.run(spec(work, "head -c 300000000 /dev/zero | tr '\\0' A; echo; echo 'score: 1'", budget=60,
                         limits=LIMITS.model_copy(update={"log_bytes": 1024**2})))  # fmt: skip
    assert len(r.output) <= 8 * 1024**2 + 100
    assert r.output.rstrip().endswith("score: 1")


def test_a_missing_image_is_an_infrastructure_error(sandbox: DockerSandbox, work: Path) -> None:
    with pytest.raises(InfraError, match="not present locally"):
        sandbox.run(
            spec(work, "true", limits=LIMITS.model_copy(update={"image": "autoresearch/absent:0"}))
        )


def test_reap_removes_only_containers_of_dead_owners(sandbox: DockerSandbox, docker_client: docker.DockerClient,
                                                     work: Path) -> None:  # fmt: skip
    gone = subprocess.Popen(["sleep", "0"])
    dead_owner = owner_id(gone.pid)
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])
    try:
        made = {}
        for name, owner in (("dead", dead_owner), ("alive", owner_id(alive.pid))):
            made[name] = docker_client.containers.create(
                LIMITS.image,
                ["sleep", "1"],
                labels={LABEL: "1", OWNER_LABEL: owner, "autoresearch.run": "reap"},
            )
        assert sandbox.reap() >= 1
        left = {c.id for c in our_containers(docker_client, **{"autoresearch.run": "reap"})}
        assert made["dead"].id not in left and made["alive"].id in left
    finally:
        alive.kill()
        for c in our_containers(docker_client, **{"autoresearch.run": "reap"}):
            c.remove(force=True)


def test_reap_removes_a_live_owners_container_past_its_deadline(
    sandbox: DockerSandbox, docker_client: docker.DockerClient, work: Path
) -> None:
    """A container whose killer is gone (a Ray worker whose node lost its raylet) outlives no reap."""
    made = {}
    for name, deadline in (("overdue", time.time() - 120), ("in time", time.time() + 600)):
        made[name] = docker_client.containers.create(LIMITS.image, ["sleep", "1"], labels={
            LABEL: "1", OWNER_LABEL: sandbox.owner, "autoresearch.run": "deadline",
            DEADLINE_LABEL: f"{deadline:.0f}"})  # fmt: skip
    try:
        assert sandbox.reap() >= 1
        left = {c.id for c in our_containers(docker_client, **{"autoresearch.run": "deadline"})}
        assert made["overdue"].id not in left and made["in time"].id in left
        c = sandbox.create(spec(work, "true", budget=30))
        c.remove(force=True)
        assert time.time() + 30 <= float(c.labels[DEADLINE_LABEL]) <= time.time() + 60
    finally:
        for c in our_containers(docker_client, **{"autoresearch.run": "deadline"}):
            c.remove(force=True)


def test_a_cancel_between_create_and_start_still_kills_the_container(
    docker_client: docker.DockerClient, work: Path
) -> None:
    """SIGTERM lands after the container is made but before it starts: it must not run to its budget."""

    class CancelledMidway(DockerSandbox):
        armed = True

        def create(self, spec: ContainerSpec):  # type: ignore[no-untyped-def]
            container = super().create(spec)
            if self.armed:
                self.armed = False
                self.cancel()  # its kill finds the container created, not running: Docker refuses
            return container

    box = CancelledMidway(docker_client)
    t0 = time.monotonic()
    r = box.run(spec(work, "sleep 60", budget=60))
    assert time.monotonic() - t0 < 15 and r.exit_code == 137 and not r.timed_out
    with pytest.raises(InfraError, match="cancelled"):  # nothing new starts until reopened
        box.run(spec(work, "true"))
    box.reopen()
    assert box.run(spec(work, "true")).exit_code == 0
    assert our_containers(docker_client, **{"autoresearch.run": "sandbox-test"}) == []


def test_a_container_whose_creation_answer_was_lost_is_removed_by_the_next_run(
    docker_client: docker.DockerClient, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine makes the container, then goes away before docker-py's inspect: no id came back."""
    from docker.models.containers import ContainerCollection

    def gone(*_a: object, **_k: object) -> None:
        monkeypatch.undo()  # once
        raise requests.ConnectionError("('Connection aborted.', the engine is shutting down)")

    box = DockerSandbox(docker.from_env())
    monkeypatch.setattr(ContainerCollection, "get", gone)
    with pytest.raises(InfraError, match="creating a container"):
        box.run(spec(work, "true"))
    assert len(our_containers(docker_client, **{"autoresearch.run": "sandbox-test"})) == 1
    assert box.run(spec(work, "true")).exit_code == 0  # removes it before its own
    assert our_containers(docker_client, **{"autoresearch.run": "sandbox-test"}) == []


def test_leased_gpus_reach_the_container_by_uuid(sandbox: DockerSandbox, work: Path) -> None:
    from orchestrator.gpus import FakeInventory, Leases

    leases = Leases(FakeInventory.of(4))
    got = leases.acquire(2, "exp-1")
    assert got is not None
    # This CPU engine cannot start a GPU container; the request it would pass is what we check.
    c = sandbox.create(spec(work, "true", gpus=tuple(g.uuid for g in got)))
    try:
        requests = c.attrs["HostConfig"]["DeviceRequests"]
    finally:
        c.remove(force=True)
    assert requests == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["GPU-fake-0000", "GPU-fake-0001"],
         "Capabilities": [["gpu"]], "Options": {}}
    ]  # fmt: skip


class _MarkerVram:
    """NVML as a fake: 3 GiB for any host pid whose command line holds the marker."""

    def snapshot(self) -> list[object]:
        return []

    def process_memory(self, pids: set[int]) -> int | None:
        for pid in pids:
            try:
                if b"vram-marker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return 3 * 1024**3
            except OSError:
                continue
        return None


class _NoDeviceSandbox(DockerSandbox):
    """This CPU engine cannot start a GPU container: create it without the device request."""

    def create(self, spec: ContainerSpec):  # type: ignore[no-untyped-def]
        import dataclasses

        return super().create(dataclasses.replace(spec, gpus=()))


def test_peak_vram_is_read_for_the_containers_own_host_pids(
    sandbox: DockerSandbox, work: Path
) -> None:
    gpu_box = _NoDeviceSandbox(sandbox.client, inventory=_MarkerVram())  # type: ignore[arg-type]
    command = "python3 -c 'import time; time.sleep(1.5)' vram-marker"
    r = gpu_box.run(spec(work, command, gpus=("GPU-fake-0000",)))
    assert (
        r.exit_code == 0 and r.peak_vram_bytes == 3 * 1024**3
    )  # found through the container's cgroup
    assert gpu_box.run(spec(work, command)).peak_vram_bytes is None  # no GPU leased: not sampled
    other = subprocess.Popen(["python3", "-c", "import time; time.sleep(3)", "vram-marker"])
    try:  # a host process with the marker is not the container's
        r = gpu_box.run(spec(work, "sleep 1.5", gpus=("GPU-fake-0000",)))
    finally:
        other.kill()
    assert r.peak_vram_bytes is None


def test_the_sandbox_passes_every_cis_item_and_a_weak_container_fails(
    sandbox: DockerSandbox, docker_client: docker.DockerClient, work: Path
) -> None:
    from dataclasses import replace

    from orchestrator.sandbox.audit import audit
    from orchestrator.sandbox.seccomp import default_profile

    # with the profile a run snapshots by default (the engine's, AIO and io_uring refused)
    c = sandbox.create(replace(spec(work, "true"), seccomp=default_profile()))
    try:
        ours = audit(c.attrs)
    finally:
        c.remove(force=True)
    assert all(i.ok for i in ours), [i.line() for i in ours if not i.ok]
    assert len(ours) == 21
    weak = docker_client.containers.create(  # what a careless runner would do; created, never started
        LIMITS.image, ["true"], user="0:0", privileged=True, pid_mode="host", cap_add=["SYS_ADMIN"],
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}, "/etc": {"bind": "/host-etc"}},
        security_opt=["seccomp=unconfined"], network_mode="host", labels={LABEL: "1", "autoresearch.run": "weak"},
    )  # fmt: skip
    try:
        failed = {i.cis for i in audit(weak.attrs) if not i.ok}
    finally:
        weak.remove(force=True)
    assert failed == {"4.1", "5.3", "5.4", "5.5", "5.9", "5.10", "5.11", "5.12", "5.15", "5.21", "5.25", "5.28",
                      "5.29", "5.31", "host"}  # fmt: skip


def test_a_seccomp_profile_is_applied(sandbox: DockerSandbox, work: Path) -> None:
    import json

    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    }
    r = sandbox.run(
        spec(work, "mkdir /tmp/d 2>&1; echo still-running", seccomp=json.dumps(profile))
    )
    assert "Operation not permitted" in r.output and "still-running" in r.output


def runsc_registered(client: docker.DockerClient) -> bool:
    return "runsc" in (client.info().get("Runtimes") or {})


def test_runsc_is_requested_when_the_contract_says_so(
    sandbox: DockerSandbox, docker_client: docker.DockerClient, work: Path
) -> None:
    if not runsc_registered(docker_client):
        pytest.skip(
            "runsc (gVisor) is not registered with this Docker engine (scripts/ensure-runsc)"
        )
    r = sandbox.run(
        spec(
            work,
            "dmesg 2>/dev/null | head -1; echo ok",
            limits=LIMITS.model_copy(update={"runtime": "runsc"}),
        )
    )
    assert "gVisor" in r.output or "Starting gVisor" in r.output, (
        r.output
    )  # gVisor's own kernel log


def test_workdirs_are_made_ahead_and_removed_behind_and_nothing_outlives_close(
    tmp_path: Path,
) -> None:
    from orchestrator.executors.workdirs import Workdirs

    box = tmp_path / "box"
    lost: list[tuple[Path, OSError]] = []
    workdirs = Workdirs(box, lambda folder, e: lost.append((folder, e)))
    with workdirs.hold(64 * 1024**2) as first:
        (first.path / "a.txt").write_text("x")
        assert first.enforced == (os.geteuid() == 0)
    deadline = time.monotonic() + 10
    while (
        len(list(box.glob("*"))) != 1 or workdirs._background.busy
    ):  # the used one gone, one spare made
        assert time.monotonic() < deadline, list(box.glob("*"))
        time.sleep(0.05)
    (spare,) = box.glob("*")
    with workdirs.hold(64 * 1024**2) as second:
        assert second.root.parent == spare  # the spare, ready before it was asked for
        assert list(second.path.iterdir()) == []
    workdirs.close()
    assert list(box.glob("*")) == [] and lost == []
    assert str(box) not in Path("/proc/mounts").read_text()
