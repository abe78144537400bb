"""Audit a sandbox container against the CIS Docker Benchmark's container-runtime items.

A pure function over `docker inspect` output, so `doctor --sandbox` and the tests
judge the same thing: the container the orchestrator really creates.
"""

from __future__ import annotations

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


def audit(attrs: dict[str, Any]) -> list[Item]:
    host: dict[str, Any] = attrs.get("HostConfig") or {}
    cfg: dict[str, Any] = attrs.get("Config") or {}
    sources = [str(m.get("Source", "")) for m in attrs.get("Mounts") or []]
    sources += [str(b).split(":")[0] for b in host.get("Binds") or []]
    sec = [str(o) for o in host.get("SecurityOpt") or []]
    user = str(cfg.get("User") or "")
    uid, _, gid = user.partition(":")

    def item(cis: str, title: str, ok: bool, detail: str) -> Item:
        return Item(cis, title, bool(ok), detail)

    return [
        item("4.1", "runs as a non-root user", uid not in ("", "0", "root") and gid not in ("", "0", "root"),
             f"user {user or '(image default: root)'}"),
        item("5.3", "capabilities dropped", host.get("CapDrop") == ["ALL"] and not host.get("CapAdd"),
             f"drop={host.get('CapDrop')} add={host.get('CapAdd')}"),
        item("5.4", "not privileged", not host.get("Privileged"), f"privileged={bool(host.get('Privileged'))}"),
        item("5.5", "no sensitive host directory mounted", not [s for s in sources if s.rstrip("/") in
             [d.rstrip("/") for d in SENSITIVE]], f"mounts={sources}"),
        item("5.9", "host network namespace not shared", host.get("NetworkMode") != "host",
             f"network={host.get('NetworkMode')}"),
        item("5.10", "memory limited", (host.get("Memory") or 0) > 0, f"memory={host.get('Memory')}"),
        item("5.11", "CPU limited", (host.get("NanoCpus") or 0) > 0 or (host.get("CpuQuota") or 0) > 0,
             f"nano_cpus={host.get('NanoCpus')}"),
        item("5.12", "root filesystem read-only", host.get("ReadonlyRootfs") is True,
             f"read_only={host.get('ReadonlyRootfs')}"),
        item("5.15", "host PID namespace not shared", host.get("PidMode") != "host", f"pid={host.get('PidMode') or 'private'}"),
        item("5.16", "host IPC namespace not shared", host.get("IpcMode") != "host", f"ipc={host.get('IpcMode')}"),
        item("5.20", "host UTS namespace not shared", host.get("UTSMode") != "host", f"uts={host.get('UTSMode') or 'private'}"),
        item("5.21", "seccomp not disabled", not any(o.replace(":", "=") == "seccomp=unconfined" for o in sec),
             "default or custom profile" if not any("unconfined" in o for o in sec) else "unconfined"),
        item("5.25", "no new privileges", any(o.replace(":", "=") in ("no-new-privileges=true", "no-new-privileges")
             for o in sec), f"security_opt={[o[:40] for o in sec]}"),
        item("5.28", "PIDs limited", (host.get("PidsLimit") or 0) > 0, f"pids={host.get('PidsLimit')}"),
        item("5.29", "not on the default bridge", host.get("NetworkMode") == "none", f"network={host.get('NetworkMode')}"),
        item("5.31", "Docker socket not mounted", not [s for s in sources if s in SOCKETS], f"mounts={sources}"),
    ]  # fmt: skip
