"""Who made a container or a work folder: a process, named so that pid reuse cannot fool us."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_id(pid: int | None = None) -> str:
    """host:pid:start-time — unique to this process even after pid reuse."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start_time(pid)}"


def owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True  # another machine's container: not ours to judge
    pid_s, _, start = rest.partition(":")
    if not pid_s.isdigit():
        return False
    return _proc_start_time(int(pid_s)) == start
