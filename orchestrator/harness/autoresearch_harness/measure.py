"""Trusted figures of the candidate's side, read from the kernel, never from the candidate.

`window()` measures, over a block of the evaluator, the CPU seconds and the peak
resident memory of every process of the candidate's user (its worker, the
commands and services it started). The kernel keeps these in /proc; the
candidate cannot write them. CPU includes the processes that ended and were
waited for (the kernel adds them to their parent's children's time).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Figures:
    """What the candidate's side used during a window (filled in when it closes)."""

    cpu_s: float = 0.0
    peak_memory_bytes: int = 0
    wall_s: float = 0.0


def candidate_uid() -> int:
    return int(os.environ.get("AUTORESEARCH_CANDIDATE_UID", "-1"))


def _processes(uid: int) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    out.append(pid)
            except OSError:
                continue
    return out


def _stat(pid: str) -> tuple[float, int]:
    """(CPU seconds with waited-for children, resident bytes) of one process; 0s if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / _TICK, int(fields[21]) * _PAGE


def cpu_and_memory(uid: int | None = None) -> tuple[float, int]:
    """CPU seconds so far and resident bytes now, summed over the candidate's processes."""
    uid = candidate_uid() if uid is None else uid
    cpu, rss = 0.0, 0
    for pid in _processes(uid):
        c, r = _stat(pid)
        cpu, rss = cpu + c, rss + r
    return cpu, rss


@contextmanager
def window(interval: float = 0.01) -> Iterator[Figures]:
    """Measure the candidate's side while the block runs; the figures are final after it."""
    figures = Figures()
    stop = threading.Event()
    cpu0, rss0 = cpu_and_memory()
    peak = [rss0]

    def sample() -> None:
        while not stop.wait(interval):
            peak[0] = max(peak[0], cpu_and_memory()[1])

    thread = threading.Thread(target=sample, name="harness-window", daemon=True)
    t0 = time.perf_counter()
    thread.start()
    try:
        yield figures
    finally:
        stop.set()
        thread.join()
        cpu1, rss1 = cpu_and_memory()
        figures.wall_s = time.perf_counter() - t0
        figures.cpu_s = max(0.0, cpu1 - cpu0)
        figures.peak_memory_bytes = max(peak[0], rss1)
