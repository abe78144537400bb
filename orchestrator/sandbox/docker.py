"""The local Docker engine as a sandbox.

Every container is created from a local image (never an implicit pull), with all
the hardening DESIGN.md lists, killed with SIGKILL at its budget by the host,
and removed in `finally`. A dead orchestrator's containers carry an owner label
naming a process that no longer exists; `reap` removes them.

Engine failures (daemon gone, API errors) raise InfraError: they say nothing
about the candidate (inspect_ai's docker/failure.py makes the same split).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig, Ulimit
from docker.types import Mount as DockerMount

from orchestrator.errors import ImageAbsent, InfraError
from orchestrator.gpus import GpuInventory, NvmlInventory, VramSampler
from orchestrator.sandbox import LABEL, ContainerResult, ContainerSpec, Stale, cores
from orchestrator.sandbox.cgroups import CgroupSampler
from orchestrator.sandbox.disk import DiskWatch
from orchestrator.sandbox.engine import connect, on_this_machine
from orchestrator.sandbox.owner import owner_alive, owner_id
from orchestrator.sandbox.worker import WorkerOutput, cap_tail

OWNER_LABEL = f"{LABEL}.owner"
DEADLINE_LABEL = f"{LABEL}.deadline"
"""Epoch seconds by which the container must be gone: any later reap on its host removes it."""
OVERDUE_S = 60.0
RUNSC_THREAD_HEADROOM = 256
KILL_GRACE_S = 10.0
"""After SIGKILL, how long we wait for the engine to report the exit."""
CHOSEN_ENV = "AUTORESEARCH_CHOSEN_ENV"
"""Names the variables the spec set: the engine merges them over the image's `ENV`, and a
trusted entry keeps these whole and filters the image's (harness/autoresearch_harness/environment.py)."""


@contextlib.contextmanager
def _engine_errors(doing: str, image: str) -> Iterator[None]:
    """Engine failures as InfraError, with a missing image said plainly."""
    try:
        yield
    except ImageNotFound:
        raise ImageAbsent(
            f"image {image} is not present locally — run `autoresearch images build`"
        ) from None
    except (APIError, requests.RequestException) as e:
        raise InfraError(f"{doing} failed: {e}") from e


def _float(text: str | None) -> float:
    try:
        return float(text) if text else float("inf")
    except ValueError:
        return float("inf")


def _mounts(spec: ContainerSpec) -> list[DockerMount]:
    """The workspace, writable, then the spec's own bind mounts."""
    mounts = [DockerMount("/workspace", str(spec.workspace), type="bind", read_only=False)]
    mounts += [
        DockerMount(m.target, str(m.source), type="bind", read_only=m.read_only)
        for m in spec.mounts
    ]
    return mounts


def _add_runtime_and_devices(kwargs: dict[str, Any], spec: ContainerSpec) -> None:
    """What `spec` asks beyond the defaults: another runtime, a seccomp profile, GPUs."""
    lim = spec.limits
    if lim.runtime != "runc":
        kwargs["runtime"] = lim.runtime
        # gVisor's own kernel reaps orphans and takes every process down with the
        # sandbox; docker-init under runsc breaks pipes for a non-root user.
        kwargs["init"] = False
        # The host's pids cgroup counts gVisor's own threads (sentry, gofer), not the
        # guest's processes (goroutines): too low a limit panics the sandbox kernel.
        kwargs["pids_limit"] = lim.pids + RUNSC_THREAD_HEADROOM
    if spec.seccomp is not None:
        kwargs["security_opt"] = [*kwargs["security_opt"], f"seccomp={spec.seccomp}"]
    if spec.gpus:  # exactly the leased GPUs, by UUID: never `--gpus all` on a shared box
        kwargs["device_requests"] = [
            DeviceRequest(device_ids=list(spec.gpus), capabilities=[["gpu"]])
        ]


def _kill(container: Container) -> None:
    """SIGKILL, whatever state the container or the engine is in."""
    with contextlib.suppress(NotFound, APIError, requests.RequestException):
        container.kill()


MSGQUEUE_BYTES = 819200
"""POSIX message queue bytes per user (the kernel's usual default, stated, not inherited)."""


class DockerSandbox:
    """SandboxBackend on the local Docker engine."""

    def __init__(
        self, client: docker.DockerClient | None = None, inventory: GpuInventory | None = None
    ) -> None:
        self.client = client or connect()
        self.here = on_this_machine(self.client)
        self.owner = owner_id()
        self._orphans: set[str] = set()
        """Ids or names of our containers whose removal failed, or whose creation's answer was
        lost (engine going down); their removal is retried before every run and by `reap`."""
        self._inventory = inventory
        self._live: set[Container] = set()
        self._lock = threading.Lock()
        self._cancelled = False

    @property
    def inventory(self) -> GpuInventory:
        """Where per-process VRAM is read (NVML unless given); opened on the first GPU run."""
        if self._inventory is None:
            self._inventory = NvmlInventory()
        return self._inventory

    def cancel(self) -> int:
        """SIGKILL every container this sandbox is running now (other threads' runs included),
        and any a run starts until `reopen()`: a container created before the cancel but
        started after it would otherwise run to its budget."""
        with self._lock:
            self._cancelled = True
            live = list(self._live)
        for c in live:
            _kill(c)
        return len(live)

    def reopen(self) -> None:
        """Accept runs again after a `cancel()`."""
        with self._lock:
            self._cancelled = False

    def create(self, spec: ContainerSpec, gate_s: float | None = None) -> Container:
        """The hardened container for `spec`, created but not started; the caller removes it.
        `gate_s`: made ahead (sandbox/warm.py), its standard input open for the word to go,
        which may take that long to come."""
        kwargs = self._hardened(spec)
        if gate_s is not None:
            kwargs["stdin_open"] = True
            deadline = time.time() + gate_s + spec.budget_s + KILL_GRACE_S
            kwargs["labels"][DEADLINE_LABEL] = f"{deadline:.0f}"
        _add_runtime_and_devices(kwargs, spec)
        # Named by us: docker-py creates, then inspects. When the engine goes down between
        # the two, it has made a container whose id we never hear; its name we know.
        name = kwargs["name"] = f"autoresearch-{uuid.uuid4().hex[:16]}"
        image = spec.limits.image
        try:
            with _engine_errors(f"creating a container from {image}", image):
                return self.client.containers.create(image, **kwargs)
        except InfraError:
            self._orphans.add(name)
            raise

    def _hardened(self, spec: ContainerSpec) -> dict[str, Any]:
        """`containers.create` arguments with every default hardening DESIGN.md lists."""
        lim = spec.limits
        log_size = max(lim.log_bytes, 1024**2)
        return dict(
            command=["/bin/sh", "-c", spec.command],
            working_dir="/workspace",
            user=spec.user or lim.user,
            environment={**spec.env, CHOSEN_ENV: ",".join(sorted(spec.env))} if spec.env else {},
            healthcheck={"test": ["NONE"]},  # an image's HEALTHCHECK would run as the main user
            labels={
                LABEL: "1",
                OWNER_LABEL: self.owner,
                **spec.labels,
                DEADLINE_LABEL: f"{time.time() + spec.budget_s + KILL_GRACE_S:.0f}",
            },
            hostname="sandbox",
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges=true"],
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={lim.tmpfs},mode=1777", **spec.tmpfs},
            mounts=_mounts(spec),
            mem_limit=lim.memory,
            memswap_limit=lim.memory,
            pids_limit=lim.pids,
            nano_cpus=int(lim.cpus * 1e9),
            cpuset_cpus=None if spec.core is None else str(spec.core),  # sandbox/cores.py
            ipc_mode="private",
            shm_size=lim.shm,
            ulimits=[
                Ulimit(name="nofile", soft=lim.nofile, hard=lim.nofile),
                Ulimit(
                    name="core", soft=0, hard=0
                ),  # no core: a core_pattern pipe skips the disk cap
                Ulimit(name="msgqueue", soft=MSGQUEUE_BYTES, hard=MSGQUEUE_BYTES),
            ],
            init=True,
            log_config=LogConfig(
                type="json-file", config={"max-size": str(log_size), "max-file": "2"}
            ),
            detach=True,
        )

    def run(self, spec: ContainerSpec) -> ContainerResult:
        """Run `spec` in a fresh container, or in the one made ahead for it (`spec.warm`)."""
        self._refuse_if_cancelled()
        self.remove_orphans()
        with cores.onto(spec, self.here) as spec:
            container = spec.warm.take() if spec.warm is not None else self.create(spec)
            with self._lock:
                self._live.add(container)
            try:
                return self._run(container, spec)
            except (APIError, requests.RequestException, DockerException) as e:
                raise InfraError(
                    f"Docker failed during the experiment: {type(e).__name__}: {e}"
                ) from e
            finally:
                with self._lock:
                    self._live.discard(container)
                self.remove(container)

    def _refuse_if_cancelled(self) -> None:
        with self._lock:
            if self._cancelled:
                raise InfraError("the sandbox was cancelled: no new container until it is reopened")

    def _run(self, container: Container, spec: ContainerSpec) -> ContainerResult:
        disk = spec.disk
        before = disk.used() if disk else None
        start = time.monotonic()
        deadline = start + spec.budget_s
        cpu_before = self._go(container, spec)
        with self._lock:
            cancelled = self._cancelled
        if cancelled:  # the cancel came while it was being created: its kill missed
            with contextlib.suppress(NotFound, APIError):
                container.kill()
        worker = self._start_worker(container, spec)
        timed_out = False
        watch = DiskWatch(disk, lambda: _kill(container)) if disk and not disk.enforced else None
        sampler = CgroupSampler(container.id, cpu_before)
        vram = VramSampler(self.inventory, sampler.pids) if spec.gpus else None
        with sampler, watch or contextlib.nullcontext(), vram or contextlib.nullcontext():
            exit_code = self._wait(container, deadline - time.monotonic())
            if exit_code is None:
                timed_out = True
                with contextlib.suppress(NotFound, APIError):
                    container.kill()  # SIGKILL: nothing inside can ignore it
                exit_code = self._wait(container, KILL_GRACE_S)
                if exit_code is None:
                    raise InfraError(
                        f"container {container.short_id} survived SIGKILL for {KILL_GRACE_S:.0f} s"
                    )
            wall = time.monotonic() - start
        usage = sampler.usage
        container.reload()
        state = container.attrs["State"]
        oom = bool(state.get("OOMKilled")) or usage.oom_kills > 0
        if not oom and exit_code == 137 and not timed_out and usage.peak_memory_bytes:
            # Docker's OOMKilled flag is unreliable on some kernels: a SIGKILL we did
            # not send, with memory at the limit, is the kernel's OOM killer.
            oom = usage.peak_memory_bytes >= 0.9 * spec.limits.memory
        output = cap_tail(container.logs(stdout=True, stderr=True), 8 * spec.limits.log_bytes)
        disk_full = bool(watch and watch.tripped) or bool(disk and disk.enforced and disk.full())
        written = None if disk is None or before is None else max(0, disk.used() - before)
        if watch and watch.tripped:
            timed_out = False  # we killed it for the disk, not the clock
        return ContainerResult(
            exit_code=exit_code,
            timed_out=timed_out,
            oom_killed=oom,
            wall_s=wall,
            peak_memory_bytes=usage.peak_memory_bytes,
            cpu_s=usage.cpu_s,
            output=output,
            disk_full=disk_full,
            workspace_bytes=written,
            peak_vram_bytes=vram.peak if vram else None,
            candidate_output=worker.text() if worker else None,
            forks_refused=usage.forks_refused,
        )

    @staticmethod
    def _go(container: Container, spec: ContainerSpec) -> float:
        """Start it, or let the one made ahead go; the CPU seconds it used before (made and
        started ahead, its clock and its CPU start when it goes). On its core either way
        before any candidate code runs (sandbox/cores.py)."""
        moving = cores.Moving(container, spec)  # one made ahead, onto its core as it goes
        cpu_before = spec.warm.go(spec.env) if spec.warm is not None else 0.0
        if spec.warm is None:
            container.start()
        moving.wait()
        return cpu_before

    @staticmethod
    def _start_worker(container: Container, spec: ContainerSpec) -> WorkerOutput | None:
        """Harness mode: the candidate's worker, as its own user, beside the evaluator."""
        if spec.worker is None:
            return None
        try:
            return WorkerOutput(container, spec.worker, 8 * spec.limits.log_bytes, spec.env)
        except (APIError, requests.RequestException) as e:
            with contextlib.suppress(NotFound, APIError, requests.RequestException):
                container.reload()
                if container.status != "running":
                    return None  # the evaluator ended before it needed the candidate
                container.kill()
            raise InfraError(f"starting the candidate's worker failed: {e}") from e

    @staticmethod
    def _wait(container: Container, timeout: float) -> int | None:
        """Exit code, or None when `timeout` passed first."""
        if timeout <= 0:
            return None
        started = time.monotonic()
        try:
            status = container.wait(timeout=max(timeout, 0.001))
        except (requests.ReadTimeout, requests.ConnectionError) as e:
            # docker-py reports a read timeout as either, depending on where it hit.
            if time.monotonic() - started >= timeout - 0.05:
                return None
            raise InfraError(f"lost the Docker engine while waiting: {e}") from e
        return int(status.get("StatusCode", -1))

    def remove(self, container: Container) -> None:
        """Remove it now, or as an orphan later (before the next run, by `reap`)."""
        for attempt in range(3):
            try:
                container.remove(force=True, v=True)
                return
            except NotFound:
                return
            except (APIError, requests.RequestException):
                time.sleep(0.5 * (attempt + 1))
        self._orphans.add(container.id)  # retried before the next run, and by `reap`

    def remove_orphans(self) -> None:
        """Retry removing the containers whose removal failed (the engine was away)."""
        for cid in list(self._orphans):
            try:
                self.client.api.remove_container(cid, force=True, v=True)
            except NotFound:
                pass
            except (APIError, requests.RequestException):
                continue
            self._orphans.discard(cid)

    def image_id(self, image: str) -> str:
        with _engine_errors(f"inspecting image {image}", image):
            return str(self.client.images.get(image).id)

    def reap(self, *, everything: bool = False, stale: Stale | None = None) -> int:
        self.remove_orphans()
        try:  # one listing, no inspect per container: one may vanish while we look
            found = self.client.api.containers(all=True, filters={"label": f"{LABEL}=1"})
        except (APIError, requests.RequestException) as e:
            raise InfraError(f"listing containers failed: {e}") from e
        removed = 0
        for c in found:
            labels: dict[str, str] = c.get("Labels") or {}
            owner = labels.get(OWNER_LABEL, "")
            dead = owner != self.owner and not owner_alive(owner)
            # e.g. its owner's host lost the process that would have killed it at the budget
            overdue = time.time() > _float(labels.get(DEADLINE_LABEL)) + OVERDUE_S
            if everything or dead or overdue or (stale is not None and stale(labels)):
                removed += self._reap_one(str(c["Id"]))
        return removed

    def _reap_one(self, cid: str) -> int:
        """Remove one left-over container; 0 when another reaper got there first."""
        try:
            self.client.api.remove_container(cid, force=True, v=True)
            return 1
        except NotFound:
            return 0
        except APIError as e:
            if e.status_code == 409:  # "removal already in progress": another run's reaper
                return 0
            raise InfraError(f"removing container {cid[:12]} failed: {e}") from e
        except requests.RequestException as e:
            raise InfraError(f"removing container {cid[:12]} failed: {e}") from e
