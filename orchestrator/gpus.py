"""GPU inventory and leasing on a shared box, through NVML (nvidia-ml-py).

A GPU is leasable only when NVML shows no compute process of another tenant on
it and its memory use and utilisation are under thresholds; this is re-checked
before every lease. Peak VRAM of an experiment is the sampled sum of NVML's
per-process memory over the experiment's host pids.

Deliberately light: stdlib + pynvml only (imported lazily), so `gpu-check` runs
on a GPU box that has NVML and PyTorch but neither Docker nor our other deps.
No NVML library or driver means zero GPUs, never an exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.poller import Poller


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total: int
    memory_used: int
    utilization: int
    """Percent of time a kernel ran over NVML's last sample period."""
    processes: tuple[tuple[int, int | None], ...] = ()
    """(host pid, bytes used or None when NVML cannot say) of each compute process."""


class GpuInventory(Protocol):
    error: str | None
    """Why NVML cannot be used here (shown when GPUs are asked for); None when it can."""

    def snapshot(self) -> list[Gpu]:
        """Every GPU as NVML sees it now; [] without NVML. Never raises."""
        ...

    def process_memory(self, pids: set[int]) -> int | None:
        """Bytes of GPU memory used by `pids`, summed over all GPUs; None if unknown. Never raises."""
        ...


@dataclass(frozen=True)
class LeasePolicy:
    max_memory_used: float = 0.05
    """Share of a GPU's memory that may already be used (driver, display) for it to be free."""
    max_utilization: int = 10
    """Percent utilisation above which a GPU counts as busy."""
    pinned: tuple[int, ...] | None = None
    """`--gpus 0,2`: only these indices may be leased; None = any."""


def free(gpu: Gpu, own_pids: set[int], policy: LeasePolicy) -> str | None:
    """None when `gpu` may be leased, else why not (for `doctor` and the log)."""
    if policy.pinned is not None and gpu.index not in policy.pinned:
        return "not in --gpus"
    foreign = [pid for pid, _ in gpu.processes if pid not in own_pids]
    if foreign:
        return f"another tenant's compute process (pid {foreign[0]})"
    if gpu.memory_total and gpu.memory_used > policy.max_memory_used * gpu.memory_total:
        return f"{gpu.memory_used / 1024**3:.1f} GiB already in use"
    if gpu.utilization > policy.max_utilization:
        return f"{gpu.utilization}% busy"
    return None


class Leases:
    """Hands out free GPUs, one holder each; thread-safe."""

    def __init__(self, inventory: GpuInventory, policy: LeasePolicy | None = None) -> None:
        self.inventory = inventory
        self.policy = policy or LeasePolicy()
        self._held: dict[str, object] = {}
        self._lock = threading.Lock()

    def acquire(
        self, count: int, holder: object, own_pids: set[int] | None = None
    ) -> list[Gpu] | None:
        """`count` free GPUs for `holder`, or None when not enough are free right now."""
        with self._lock:
            candidates = [
                g
                for g in self.inventory.snapshot()
                if g.uuid not in self._held and free(g, own_pids or set(), self.policy) is None
            ]
            if len(candidates) < count:
                return None
            chosen = candidates[:count]
            for g in chosen:
                self._held[g.uuid] = holder
            return chosen

    def release(self, gpus: Iterable[Gpu]) -> None:
        with self._lock:
            for g in gpus:
                self._held.pop(g.uuid, None)


class NvmlInventory:
    """GpuInventory over the real NVML library."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self.error: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as e:  # library absent, no driver, or NVML's own error types
            self.error = f"{type(e).__name__}: {e}"

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None

    def _processes(self, handle: Any) -> tuple[tuple[int, int | None], ...]:
        nv = self._nvml
        try:
            procs = nv.nvmlDeviceGetComputeRunningProcesses(handle)
        except nv.NVMLError:
            return ()
        return tuple((p.pid, p.usedGpuMemory) for p in procs)

    def snapshot(self) -> list[Gpu]:
        nv = self._nvml
        if nv is None:
            return []
        out = []
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                try:
                    util = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
                except nv.NVMLError:
                    util = 0
                out.append(
                    Gpu(
                        i,
                        str(nv.nvmlDeviceGetUUID(h)),
                        str(nv.nvmlDeviceGetName(h)),
                        int(mem.total),
                        int(mem.used),
                        util,
                        self._processes(h),
                    )
                )
        except nv.NVMLError as e:
            self.error = str(e)
            return []
        return out

    def process_memory(self, pids: set[int]) -> int | None:
        if self._nvml is None:
            return None
        total, known = 0, False
        for gpu in self.snapshot():
            for pid, used in gpu.processes:
                if pid in pids and used is not None:
                    total += used
                    known = True
        return total if known else None


@dataclass
class FakeInventory:
    """A scripted inventory for tests: edit `gpus` between calls to simulate tenants."""

    gpus: list[Gpu] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def of(cls, n: int, memory: int = 80 * 1024**3) -> FakeInventory:
        return cls([Gpu(i, f"GPU-fake-{i:04d}", "Fake H100", memory, 0, 0) for i in range(n)])

    def snapshot(self) -> list[Gpu]:
        return list(self.gpus)

    def process_memory(self, pids: set[int]) -> int | None:
        used = [u for g in self.gpus for pid, u in g.processes if pid in pids and u is not None]
        return sum(used) if used else None


class VramSampler(Poller):
    """Samples the peak GPU memory of a changing set of host pids, in a daemon thread."""

    def __init__(
        self, inventory: GpuInventory, pids: Callable[[], set[int]], interval: float = 0.1
    ) -> None:
        super().__init__(interval, "vram-sampler")
        self.inventory = inventory
        self.pids = pids
        self.peak: int | None = None
        self.samples = 0

    def poll(self) -> bool:
        used = self.inventory.process_memory(self.pids())
        self.samples += 1
        if used is not None:
            self.peak = max(used, self.peak or 0)
        return True
