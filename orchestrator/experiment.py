"""An experiment as the ledger records it, and the run it belongs to: the rows, and the
words for where an experiment is (its phase) and how it ended (its status).

Phases, in order: proposing → frozen → running → decided → done. A kill at any
phase resumes from it (see `ledger.py`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

PHASES = ("proposing", "frozen", "running", "decided", "confirming", "done")
"""`confirming`: a winner whose base went stale was rebased onto the new best and
runs again before it may merge (then `decided` again)."""
IN_FLIGHT = ("frozen", "running", "confirming")
"""Phases of an experiment a slot is still working on (or will, once one is free)."""
Status = Literal["keep", "discard", "crash", "refused", "duplicate"]
"""How an experiment ended: kept (merged), discarded, crashed, refused before it ran, or not
run because an earlier candidate had exactly its tree (its result is that one's)."""
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class Experiment:
    id: int
    phase: str
    parent: str
    commit_sha: str | None
    description: str
    hypothesis: str
    status: str | None
    reason: str | None
    metric: float | None
    metrics: dict[str, float]
    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    wall_s: float | None
    cpu_s: float | None
    peak_memory_bytes: int | None
    workspace_bytes: int | None
    disk_full: bool
    signal: int | None
    loc: int | None
    cost_usd: float | None
    usage: dict[str, int]
    samples: list[float]
    merged: bool
    merged_sha: str | None
    infra_retries: int
    started: float
    finished: float | None
    peak_vram_bytes: int | None = None
    slot: int | None = None
    """The worker slot it ran on."""
    ran_from: float | None = None
    ran_to: float | None = None
    """When its sandbox work began and ended (epoch seconds): which experiments overlapped."""
    rebased_from: str | None = None
    """The original candidate commit, when a stale winner was rebased onto a newer best."""
    rebases: int = 0
    node: str | None = None
    """The cluster node its recorded run was on (Ray); None on this machine."""
    flags: list[str] = field(default_factory=list)
    """Known tampering moves its proposal makes (night/tampering.py); [] when none."""
    tree: str | None = None
    """The candidate's git tree: a later candidate with the same tree is not run again."""
    agent: str | None = None
    """Which member of a portfolio proposed it (`agent.kind = "portfolio"`); None otherwise."""

    @property
    def holds_best(self) -> bool:
        """A kept result that is on the run branch: the baseline, or a keep that merged."""
        return self.status == "keep" and self.metric is not None and (self.merged or self.id == 0)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Experiment:
        d = dict(row)
        d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
        d["usage"] = json.loads(d["usage"]) if d["usage"] else {}
        d["samples"] = json.loads(d["samples"]) if d["samples"] else []
        d["flags"] = json.loads(d["flags"]) if d.get("flags") else []
        for flag in ("timed_out", "oom_killed", "merged", "disk_full"):
            d[flag] = bool(d[flag])
        return cls(**d)


@dataclass(frozen=True)
class RunInfo:
    tag: str
    created: float
    base_commit: str
    contract: str
    source: str
    evaluator_hash: str
    image_id: str
    active_s: float
    stopped: str | None
    slots: int = 1
    slot_busy_s: float = 0.0
    slot_wall_s: float = 0.0

    @property
    def duty_cycle(self) -> float | None:
        """Share of the slots' wall time spent running experiments."""
        return self.slot_busy_s / self.slot_wall_s if self.slot_wall_s > 0 else None


def experiment_dir(run_dir: Path, exp_id: int) -> Path:
    """Where experiment `exp_id` of the run in `run_dir` keeps its logs and diffs."""
    return run_dir / "experiments" / f"{exp_id:04d}"


def baseline_metric(experiments: list[Experiment]) -> float | None:
    """The baseline's metric, once it was measured (None while it runs, or if it crashed)."""
    return next((e.metric for e in experiments if e.id == 0 and e.status == "keep"), None)


def best_holder(experiments: Iterable[Experiment]) -> Experiment | None:
    """The experiment that holds the best now: of those on the run branch, the one merged last
    (with several slots, winners merge out of their ids' order: the highest id is not it)."""
    return max((e for e in experiments if e.holds_best), key=_merged_at, default=None)


def _merged_at(e: Experiment) -> tuple[float, int]:
    return (e.finished or 0.0, e.id)
