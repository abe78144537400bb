"""The run's write-ahead record: SQLite in `.autoresearch/<tag>/ledger.sqlite`.

Each experiment's row is written BEFORE each step and completed after it, in
phases: proposing → frozen → running → decided → done. A killed orchestrator
resumes from the phase it finds: nothing is lost, nothing is recorded or merged
twice. A row in phase `done` is never written again: readers keep it (`rows.py`).
results.tsv is appended under the ledger's record of what it holds (`results_tsv.py`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator import results_tsv
from orchestrator.experiment import STATUSES, Experiment, RunInfo, experiment_dir
from orchestrator.notebook import Notebook
from orchestrator.rows import Rows
from orchestrator.sandbox import ContainerResult

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    tag TEXT PRIMARY KEY,
    created REAL NOT NULL,
    base_commit TEXT NOT NULL,
    contract TEXT NOT NULL,
    source TEXT NOT NULL,
    evaluator_hash TEXT NOT NULL,
    image_id TEXT NOT NULL DEFAULT '',
    active_s REAL NOT NULL DEFAULT 0,
    stopped TEXT,
    slots INTEGER NOT NULL DEFAULT 1,
    slot_busy_s REAL NOT NULL DEFAULT 0,
    slot_wall_s REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS experiment (
    id INTEGER PRIMARY KEY,
    phase TEXT NOT NULL,
    parent TEXT NOT NULL,
    commit_sha TEXT,
    description TEXT NOT NULL DEFAULT '',
    hypothesis TEXT NOT NULL DEFAULT '',
    status TEXT,
    reason TEXT,
    metric REAL,
    metrics TEXT,
    exit_code INTEGER,
    timed_out INTEGER,
    oom_killed INTEGER,
    wall_s REAL,
    cpu_s REAL,
    peak_memory_bytes INTEGER,
    workspace_bytes INTEGER,
    disk_full INTEGER NOT NULL DEFAULT 0,
    signal INTEGER,
    loc INTEGER,
    cost_usd REAL,
    usage TEXT,
    samples TEXT,
    merged INTEGER NOT NULL DEFAULT 0,
    merged_sha TEXT,
    infra_retries INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    finished REAL,
    peak_vram_bytes INTEGER,
    slot INTEGER,
    ran_from REAL,
    ran_to REAL,
    rebased_from TEXT,
    rebases INTEGER NOT NULL DEFAULT 0,
    node TEXT,
    flags TEXT,
    tree TEXT
);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    experiment INTEGER,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

# Columns added after the first release: an older ledger gains them on open.
_ADDED = {
    "run": (
        "slots INTEGER NOT NULL DEFAULT 1",
        "slot_busy_s REAL NOT NULL DEFAULT 0",
        "slot_wall_s REAL NOT NULL DEFAULT 0",
    ),
    "experiment": (
        "peak_vram_bytes INTEGER",
        "slot INTEGER",
        "ran_from REAL",
        "ran_to REAL",
        "rebased_from TEXT",
        "rebases INTEGER NOT NULL DEFAULT 0",
        "node TEXT",
        "flags TEXT",
        "tree TEXT",
        "agent TEXT",
    ),
}


class Ledger(Notebook):
    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.path = run_dir / "ledger.sqlite"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            self.path, isolation_level=None, timeout=30, check_same_thread=False
        )
        self._lock = threading.RLock()  # one connection, shared by the loop's threads
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a killed process
        self.db.executescript(SCHEMA)
        for table, columns in _ADDED.items():
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            for col in columns:
                if col.split()[0] not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {col}")
        self.db.execute("CREATE INDEX IF NOT EXISTS experiment_tree ON experiment(tree)")
        self.db.execute("CREATE INDEX IF NOT EXISTS event_kind ON event(kind, ts)")  # notes, pauses
        self._rows = Rows()

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, *args: Any) -> None:
        with self._lock, self.db:
            self.db.execute(sql, args)

    def _query(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    # -- the run ----------------------------------------------------------
    def create_run(
        self,
        tag: str,
        base: str,
        contract_json: str,
        source: str,
        evaluator_hash: str,
        image_id: str = "",
    ) -> None:
        self._write(
            "INSERT INTO run (tag, created, base_commit, contract, source, evaluator_hash, image_id) VALUES (?,?,?,?,?,?,?)",
            tag,
            time.time(),
            base,
            contract_json,
            source,
            evaluator_hash,
            image_id,
        )

    def set_image_id(self, image_id: str) -> None:
        self._write("UPDATE run SET image_id = ?", image_id)

    def run(self) -> RunInfo | None:
        rows = self._query("SELECT * FROM run")
        return RunInfo(**dict(rows[0])) if rows else None

    def add_active(self, seconds: float) -> None:
        self._write("UPDATE run SET active_s = active_s + ?", seconds)

    def add_slot_time(self, slots: int, busy_s: float, wall_s: float) -> None:
        """`slots` workers were up for `wall_s` more seconds and busy `busy_s` of their total."""
        self._write(
            "UPDATE run SET slots=?, slot_busy_s = slot_busy_s + ?, slot_wall_s = slot_wall_s + ?",
            slots,
            busy_s,
            wall_s,
        )

    def set_stopped(self, reason: str | None) -> None:
        self._write("UPDATE run SET stopped = ?", reason)

    # -- experiments ------------------------------------------------------
    def begin(self, exp_id: int, parent: str) -> None:
        self._write(
            "INSERT INTO experiment (id, phase, parent, started) VALUES (?, 'proposing', ?, ?)",
            exp_id,
            parent,
            time.time(),
        )

    def next_id(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(id), -1) + 1 FROM experiment")[0][0])

    def reparent(self, exp_id: int, parent: str) -> None:
        """A proposal a kill interrupted starts again, under its id, from the best now."""
        sql = "UPDATE experiment SET parent=?, started=? WHERE id=? AND phase='proposing'"
        self._write(sql, parent, time.time(), exp_id)

    def same_tree(self, tree: str, other_than: int) -> Experiment | None:
        """The first experiment other than `other_than` whose candidate had exactly this tree."""
        sql = "SELECT * FROM experiment WHERE tree=? AND id<>? ORDER BY id LIMIT 1"
        rows = self._query(sql, tree, other_than)
        return Experiment.from_row(rows[0]) if rows else None

    def abandon(self, exp_id: int) -> None:
        """Drop a row whose proposal never happened (the agent had nothing more)."""
        self._write("DELETE FROM experiment WHERE id = ? AND phase = 'proposing'", exp_id)

    def frozen(
        self,
        exp_id: int,
        commit: str,
        description: str,
        hypothesis: str,
        loc: int | None,
        tree: str | None = None,
    ) -> None:
        self._write(
            "UPDATE experiment SET phase='frozen', commit_sha=?, description=?, hypothesis=?, loc=?, "
            "tree=? WHERE id=?",
            commit, description, hypothesis, loc, tree, exp_id,
        )  # fmt: skip

    def flagged(self, exp_id: int, flags: list[str]) -> None:
        """The tampering moves its proposal makes (night/tampering.py)."""
        self._write("UPDATE experiment SET flags=? WHERE id=?", json.dumps(flags), exp_id)

    def held(self, exp_id: int, reason: str) -> None:
        """A flagged winner kept off the run branch for a person to review (`accept`)."""
        self._write(
            "UPDATE experiment SET reason=?, phase='done', merged=0, finished=? WHERE id=?",
            reason, time.time(), exp_id,
        )  # fmt: skip

    def cost(
        self, exp_id: int, cost_usd: float | None, usage: dict[str, int], agent: str | None = None
    ) -> None:
        """What proposing experiment `exp_id` cost (recorded even when it is refused), and which
        member of a portfolio proposed it."""
        sql = "UPDATE experiment SET cost_usd=?, usage=?, agent=COALESCE(?, agent) WHERE id=?"
        self._write(sql, cost_usd, json.dumps(usage), agent, exp_id)

    def total_cost(self) -> float:
        return float(self._query("SELECT COALESCE(SUM(cost_usd), 0) FROM experiment")[0][0])

    def running(self, exp_id: int, slot: int | None = None) -> None:
        self._write(
            "UPDATE experiment SET phase=CASE WHEN phase='confirming' THEN phase ELSE 'running' END, slot=?, "
            "ran_from=COALESCE(ran_from, ?) WHERE id=?",
            slot,
            time.time(),
            exp_id,
        )

    def ran(self, exp_id: int) -> None:
        """Its sandbox work ended now."""
        self._write("UPDATE experiment SET ran_to=? WHERE id=?", time.time(), exp_id)

    def rebased(self, exp_id: int, commit: str, onto: str) -> None:
        """A stale winner now stands as `commit` on `onto` and must be confirmed there."""
        self._write(
            "UPDATE experiment SET phase='confirming', rebased_from=COALESCE(rebased_from, commit_sha), "
            "commit_sha=?, parent=?, rebases=rebases+1 WHERE id=?",
            commit,
            onto,
            exp_id,
        )

    def overturned(self, exp_id: int, reason: str) -> None:
        """A decided keep that may not merge after all (its rebase conflicted): discard, figures kept."""
        self._write(
            "UPDATE experiment SET phase='decided', status='discard', reason=? WHERE id=?",
            reason,
            exp_id,
        )

    def concurrent_with(self, exp_id: int) -> list[int]:
        """The experiments whose sandbox work overlapped `exp_id`'s."""
        rows = self._query(
            """SELECT o.id FROM experiment e JOIN experiment o ON o.id != e.id
               WHERE e.id=? AND e.ran_from IS NOT NULL AND o.ran_from IS NOT NULL
               AND o.ran_from < COALESCE(e.ran_to, 1e18) AND e.ran_from < COALESCE(o.ran_to, 1e18)
               ORDER BY o.id""",
            exp_id,
        )
        return [r[0] for r in rows]

    def infra_retry(self, exp_id: int, detail: str) -> None:
        with self._lock, self.db:
            self.db.execute(
                "UPDATE experiment SET infra_retries = infra_retries + 1 WHERE id=?", (exp_id,)
            )
            self.db.execute(
                "INSERT INTO event (ts, experiment, kind, detail) VALUES (?, ?, 'infra', ?)",
                (time.time(), exp_id, detail),
            )

    def decided(
        self,
        exp_id: int,
        *,
        status: str,
        reason: str,
        metric: float | None = None,
        metrics: dict[str, float] | None = None,
        result: ContainerResult | None = None,
        samples: list[float] | None = None,
        description: str | None = None,
    ) -> None:
        """Record the decision and the trusted figures of the run that led to it."""
        assert status in STATUSES, status
        r = result
        self._write(
            """UPDATE experiment SET phase='decided', status=?, reason=?, metric=?, metrics=?, exit_code=?,
               timed_out=?, oom_killed=?, wall_s=?, cpu_s=?, peak_memory_bytes=?, workspace_bytes=?,
               disk_full=?, signal=?, samples=?, description=COALESCE(?, description), peak_vram_bytes=?,
               node=? WHERE id=?""",
            status,
            reason,
            metric,
            json.dumps(metrics or {}),
            r and r.exit_code,
            int(bool(r and r.timed_out)),
            int(bool(r and r.oom_killed)),
            r and r.wall_s,
            r and r.cpu_s,
            r and r.peak_memory_bytes,
            r and r.workspace_bytes,
            int(bool(r and r.disk_full)),
            r and r.signal,
            json.dumps(samples or []),
            description,
            r and r.peak_vram_bytes,
            r and r.node,
            exp_id,
        )

    def done(self, exp_id: int, *, merged: bool, merged_sha: str | None = None) -> None:
        self._write(
            "UPDATE experiment SET phase='done', merged=?, merged_sha=?, finished=? WHERE id=?",
            int(merged),
            merged_sha,
            time.time(),
            exp_id,
        )

    def event(self, kind: str, detail: str, exp_id: int | None = None) -> None:
        self._write(
            "INSERT INTO event (ts, experiment, kind, detail) VALUES (?, ?, ?, ?)",
            time.time(),
            exp_id,
            kind,
            detail,
        )

    def experiments(self) -> list[Experiment]:
        """Every experiment by id; finished rows are built once (`rows.py`), so a read costs
        what is in flight, not the night's length."""
        with self._lock:
            return self._rows.read(self._query)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The ledger's event rows (infrastructure retries, leftovers), oldest first."""
        if kind is None:
            return [dict(r) for r in self._query("SELECT * FROM event ORDER BY ts")]
        return [
            dict(r) for r in self._query("SELECT * FROM event WHERE kind = ? ORDER BY ts", kind)
        ]

    def get(self, exp_id: int) -> Experiment | None:
        rows = self._query("SELECT * FROM experiment WHERE id=?", exp_id)
        return Experiment.from_row(rows[0]) if rows else None

    # -- files beside the ledger ------------------------------------------
    def exp_dir(self, exp_id: int) -> Path:
        """Experiment `exp_id`'s folder (its logs and diffs), made if need be."""
        d = experiment_dir(self.dir, exp_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_results_tsv(self) -> Path:
        """results.tsv brought up to date: the finished experiments it lacks, appended
        (`results_tsv.py`: never a doubled or torn row, whatever moment a kill hits)."""
        with self._lock:
            info = self.run()
            metric = results_tsv.metric_name(info.contract if info else None)
            return results_tsv.append(self.dir / results_tsv.NAME, self.db, metric)
