"""Host-side accounting of a running container, read straight from its cgroup.

The candidate cannot forge these figures: they come from the kernel, read by the
orchestrator. A sampler thread polls while the container runs, because the
cgroup disappears the moment the container exits; the figures it keeps are
monotone (peak memory, CPU time, OOM kills, forks the pids limit refused), so the
last good read is the best.
Works for cgroup v1 and v2, cgroupfs and systemd drivers; where the cgroup
cannot be found (remote engine, rootless), the figures are None.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.poller import Poller

ROOT = Path("/sys/fs/cgroup")


def _candidates(container_id: str) -> list[tuple[str, Path, Path, Path]]:
    """(version, memory dir, cpu dir, pids dir) for each layout Docker uses."""
    scope = f"docker-{container_id}.scope"
    out: list[tuple[str, Path, Path, Path]] = []
    for rel in (f"docker/{container_id}", f"system.slice/{scope}"):
        out.append(("v2", ROOT / rel, ROOT / rel, ROOT / rel))
        out.append(("v1", ROOT / "memory" / rel, ROOT / "cpuacct" / rel, ROOT / "pids" / rel))
    return out


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_keyed(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Usage:
    peak_memory_bytes: int | None = None
    cpu_s: float | None = None
    oom_kills: int = 0
    forks_refused: int = 0
    """Forks the pids limit refused (the `max` event of its pids cgroup)."""


def _locate(container_id: str) -> tuple[str, Path, Path, Path] | None:
    for where in _candidates(container_id):
        if where[1].is_dir():
            return where
    return None


def _cpu_s(version: str, cpu: Path) -> float | None:
    if version == "v2":
        usec = _read_keyed(cpu / "cpu.stat", "usage_usec")
        return None if usec is None else usec / 1e6
    ns = _read_int(cpu / "cpuacct.usage")
    return None if ns is None else ns / 1e9


def cpu_used(container_id: str) -> float:
    """The CPU seconds a container has used so far (0 when its cgroup cannot be read)."""
    where = _locate(container_id)
    return (_cpu_s(where[0], where[2]) if where else None) or 0.0


class CgroupSampler(Poller):
    """Polls a container's cgroup in a daemon thread until `stop()` or the cgroup is gone.

    `cpu_before`: what the container used before the run it measures (a container made
    ahead boots and waits at its gate first): left out of `usage.cpu_s`."""

    def __init__(self, container_id: str, cpu_before: float = 0.0) -> None:
        # Fast at first: a short-lived container's cgroup may exist for milliseconds only.
        super().__init__(0.2, f"cgroup-{container_id[:12]}", growth=1.5, start_interval=0.02)
        self._id = container_id
        self._where: tuple[str, Path, Path, Path] | None = None
        self._cpu_before = cpu_before
        self.usage = Usage()

    def _locate(self) -> tuple[str, Path, Path, Path] | None:
        return _locate(self._id)

    def pids(self) -> set[int]:
        """Host pids of the container's processes now (for per-process GPU accounting)."""
        where = self._where or self._locate()
        if where is None:
            return set()
        try:
            return {int(x) for x in (where[1] / "cgroup.procs").read_text().split()}
        except (OSError, ValueError):
            return set()

    def poll(self) -> bool:
        self._where = self._where or self._locate()
        return self._where is None or self._sample(*self._where)

    def _sample(self, version: str, mem: Path, cpu: Path, pids: Path) -> bool:
        cpu_s = _cpu_s(version, cpu)
        if version == "v2":
            peak = _read_int(mem / "memory.peak") or _read_int(mem / "memory.current")
            ooms = _read_keyed(mem / "memory.events", "oom_kill")
        else:
            peak = _read_int(mem / "memory.max_usage_in_bytes")
            ooms = _read_keyed(mem / "memory.oom_control", "oom_kill")
        if peak is None and cpu_s is None:
            return False
        u = self.usage
        forks = _read_keyed(pids / "pids.events", "max")
        if forks is not None:
            u.forks_refused = max(forks, u.forks_refused)
        if peak is not None:
            u.peak_memory_bytes = max(peak, u.peak_memory_bytes or 0)
        if cpu_s is not None:
            u.cpu_s = max(cpu_s - self._cpu_before, u.cpu_s or 0.0)
        if ooms is not None:
            u.oom_kills = max(ooms, u.oom_kills)
        return True
