"""Audit a sandbox container against the CIS Docker Benchmark's container-runtime items.

A pure function over `docker inspect` output, so `doctor --sandbox` and the tests
judge the same thing: the container the orchestrator really creates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SENSITIVE = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr", "/var/lib/docker")
SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock")


@dataclass(frozen=True)
class Item:
    cis: str
    title: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.cis:<5} {self.title}: {self.detail}"


@dataclass(frozen=True)
class _Seen:
    """What the checks read from `docker inspect`, gathered once."""

    host: dict[str, Any]
    user: str
    sources: list[str]
    """Host paths mounted into the container, from Mounts and Binds."""
    sec: list[str]


Check = Callable[[_Seen], tuple[bool, str]]


def audit(attrs: dict[str, Any]) -> list[Item]:
    """Every item in CHECKS, judged on one container's `docker inspect` attributes."""
    host: dict[str, Any] = attrs.get("HostConfig") or {}
    cfg: dict[str, Any] = attrs.get("Config") or {}
    sources = [str(m.get("Source", "")) for m in attrs.get("Mounts") or []]
    sources += [str(b).split(":")[0] for b in host.get("Binds") or []]
    sec = [str(o) for o in host.get("SecurityOpt") or []]
    seen = _Seen(host, str(cfg.get("User") or ""), sources, sec)
    items = []
    for cis, title, check in CHECKS:
        ok, detail = check(seen)
        items.append(Item(cis, title, bool(ok), detail))
    return items


def _non_root(s: _Seen) -> tuple[bool, str]:
    uid, _, gid = s.user.partition(":")
    ok = uid not in ("", "0", "root") and gid not in ("", "0", "root")
    return ok, f"user {s.user or '(image default: root)'}"


def _caps_dropped(s: _Seen) -> tuple[bool, str]:
    ok = s.host.get("CapDrop") == ["ALL"] and not s.host.get("CapAdd")
    return ok, f"drop={s.host.get('CapDrop')} add={s.host.get('CapAdd')}"


def _unprivileged(s: _Seen) -> tuple[bool, str]:
    return not s.host.get("Privileged"), f"privileged={bool(s.host.get('Privileged'))}"


def _no_sensitive_mount(s: _Seen) -> tuple[bool, str]:
    sensitive = [d.rstrip("/") for d in SENSITIVE]
    return not [m for m in s.sources if m.rstrip("/") in sensitive], f"mounts={s.sources}"


def _no_socket_mount(s: _Seen) -> tuple[bool, str]:
    return not [m for m in s.sources if m in SOCKETS], f"mounts={s.sources}"


def _not_shared(key: str, name: str, default: str | None = None) -> Check:
    """A namespace (HostConfig `key`) not shared with the host; `default` names an unset one."""

    def check(s: _Seen) -> tuple[bool, str]:
        mode = s.host.get(key)
        return mode != "host", f"{name}={mode if default is None else (mode or default)}"

    return check


def _limited(key: str, name: str) -> Check:
    """A resource limit (HostConfig `key`) set above zero."""

    def check(s: _Seen) -> tuple[bool, str]:
        return (s.host.get(key) or 0) > 0, f"{name}={s.host.get(key)}"

    return check


def _cpu_limited(s: _Seen) -> tuple[bool, str]:
    ok = (s.host.get("NanoCpus") or 0) > 0 or (s.host.get("CpuQuota") or 0) > 0
    return ok, f"nano_cpus={s.host.get('NanoCpus')}"


def _read_only_root(s: _Seen) -> tuple[bool, str]:
    return s.host.get("ReadonlyRootfs") is True, f"read_only={s.host.get('ReadonlyRootfs')}"


def _seccomp_on(s: _Seen) -> tuple[bool, str]:
    ok = not any(o.replace(":", "=") == "seccomp=unconfined" for o in s.sec)
    unconfined = any("unconfined" in o for o in s.sec)
    return ok, "unconfined" if unconfined else "default or custom profile"


def _no_new_privileges(s: _Seen) -> tuple[bool, str]:
    flags = ("no-new-privileges=true", "no-new-privileges")
    ok = any(o.replace(":", "=") in flags for o in s.sec)
    return ok, f"security_opt={[o[:40] for o in s.sec]}"


def _off_default_bridge(s: _Seen) -> tuple[bool, str]:
    return s.host.get("NetworkMode") == "none", f"network={s.host.get('NetworkMode')}"


def _ulimit(name: str, most: int) -> Check:
    def check(s: _Seen) -> tuple[bool, str]:
        found = [u for u in s.host.get("Ulimits") or [] if u.get("Name") == name]
        hard = found[0].get("Hard") if found else None
        return hard is not None and 0 <= int(hard) <= most, f"{name} hard limit {hard}"

    return check


def _no_aio_or_io_uring(s: _Seen) -> tuple[bool, str]:
    profile = next((o.split("=", 1)[1] for o in s.sec if o.startswith("seccomp=")), None)
    if profile is None or profile == "unconfined":
        return False, "the engine's default profile allows io_setup and io_uring_setup"
    try:
        rules = json.loads(profile).get("syscalls", [])
    except ValueError:
        return False, "seccomp profile is not JSON"
    allowed = {n for r in rules if r.get("action") == "SCMP_ACT_ALLOW" for n in r.get("names", [])}
    open_ = sorted(allowed & {"io_setup", "io_submit", "io_uring_setup", "io_uring_enter"})
    return not open_, f"allowed: {open_}" if open_ else "io_setup, io_submit, io_uring_* refused"


def _shm_sized(s: _Seen) -> tuple[bool, str]:
    shm, memory = int(s.host.get("ShmSize") or 0), int(s.host.get("Memory") or 0)
    return 0 < shm <= max(memory, 1), f"/dev/shm {shm} bytes (memory {memory})"


CHECKS: tuple[tuple[str, str, Check], ...] = (
    ("4.1", "runs as a non-root user", _non_root),
    ("5.3", "capabilities dropped", _caps_dropped),
    ("5.4", "not privileged", _unprivileged),
    ("5.5", "no sensitive host directory mounted", _no_sensitive_mount),
    ("5.9", "host network namespace not shared", _not_shared("NetworkMode", "network")),
    ("5.10", "memory limited", _limited("Memory", "memory")),
    ("5.11", "CPU limited", _cpu_limited),
    ("5.12", "root filesystem read-only", _read_only_root),
    ("5.15", "host PID namespace not shared", _not_shared("PidMode", "pid", "private")),
    ("5.16", "host IPC namespace not shared", _not_shared("IpcMode", "ipc")),
    ("5.20", "host UTS namespace not shared", _not_shared("UTSMode", "uts", "private")),
    ("5.21", "seccomp not disabled", _seccomp_on),
    ("5.25", "no new privileges", _no_new_privileges),
    ("5.28", "PIDs limited", _limited("PidsLimit", "pids")),
    ("5.29", "not on the default bridge", _off_default_bridge),
    ("5.31", "Docker socket not mounted", _no_socket_mount),
    ("host", "open files per process limited (the host's file table)", _ulimit("nofile", 65536)),
    ("host", "core dumps off", _ulimit("core", 0)),
    ("host", "POSIX message queues capped", _ulimit("msgqueue", 8 * 1024**2)),
    ("host", "AIO and io_uring refused (the host's AIO table)", _no_aio_or_io_uring),
    ("host", "/dev/shm sized within the memory limit", _shm_sized),
)
"""(CIS item, title, check) in the benchmark's order, then the host-wide tables an experiment
could drain ("host"): what `audit` judges and reports."""
