"""A Ray cluster of `ray start` processes on this machine, for the tests and the bench.

Each node carries a marker resource naming it (`test_head`, `test_second`, ...),
so a test can find its raylet and kill it. Workers import `tests.*` through
PYTHONPATH (the node sandboxes in tests/ray_nodes.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """`ray start` processes on this machine; each node carries a marker resource naming it."""

    def __init__(self) -> None:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.temp = f"/tmp/ray-test-{port}"  # its own session folder: stop() ends only this cluster
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}

    def _start(self, *args: str) -> None:
        subprocess.run([str(RAY), "start", *args, "--disable-usage-stats"], env=self.env,
                       check=True, capture_output=True, timeout=120)  # fmt: skip

    def start(self) -> None:
        self._start("--head", f"--port={self.address.split(':')[1]}", f"--temp-dir={self.temp}", "--num-cpus=1",
                    "--include-dashboard=false", "--resources", json.dumps({"autoresearch_slot": 1, "test_head": 1}))  # fmt: skip

    def add(self, name: str, *, slots: int, gpus: int = 0) -> None:
        self._start(f"--address={self.address}", "--num-cpus=1", f"--num-gpus={gpus}",
                    "--resources", json.dumps({"autoresearch_slot": slots, name: 1}))  # fmt: skip
        deadline = time.monotonic() + 60
        while ray.is_initialized() and name not in self.nodes():
            assert time.monotonic() < deadline, f"node {name} did not join"
            time.sleep(0.5)

    def nodes(self) -> dict[str, str]:
        """Marker → the 8-character node id prefix the executor reports (alive nodes)."""
        out = {}
        for n in ray.nodes():
            for key in n["Resources"]:
                if n["Alive"] and key.startswith("test_"):
                    out[key] = n["NodeID"][:8]
        return out

    def kill(self, name: str) -> None:
        """SIGKILL the raylet of node `name` (as a crashed machine would vanish)."""
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "raylet/raylet" in cmd and f",{name},1" in cmd:
                os.kill(int(pid), signal.SIGKILL)
                return
        raise AssertionError(f"no raylet for {name}")

    def stop(self) -> None:
        """SIGKILL this cluster's processes (never another Ray on this machine), then its files."""
        procs: dict[int, tuple[int, bytes]] = {}
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                procs[pid] = (ppid, Path(f"/proc/{pid}/cmdline").read_bytes())
            except (OSError, ValueError, IndexError):
                continue
        doomed = {pid for pid, (_, cmd) in procs.items() if self.temp.encode() in cmd}
        grew = True
        while grew:  # and their children: workers and agents rename themselves ("ray::IDLE")
            more = {pid for pid, (ppid, _) in procs.items() if ppid in doomed} - doomed
            doomed |= more
            grew = bool(more)
        for pid in doomed:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in doomed) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.temp, ignore_errors=True)
