"""results.tsv, autoresearch's format, appended one finished experiment at a time.

The ledger knows what the file holds: table `tsv_row` records, for every row
appended, its line and the file's size after it, in the same transaction after
the row's bytes were written. A kill between the write and that record leaves
the file longer than the ledger says (a row it does not know of, or part of
one): the next append first cuts the file back to the size the ledger knows,
so no row is ever doubled or left torn. A file shorter than that, or missing,
is rebuilt whole from the ledger. Only the night's process writes it (it holds
the run lock); the work per experiment does not grow with the night. The ledger
calls in with its connection, under its own lock; this module knows no Ledger.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from orchestrator import sanitize

TABLE = """CREATE TABLE IF NOT EXISTS tsv_row (
    experiment INTEGER PRIMARY KEY,
    line INTEGER NOT NULL,
    end_byte INTEGER NOT NULL
)"""
NAME = "results.tsv"


def atomic_write(path: Path, text: str) -> Path:
    """Readers see the old file or the new one, never half of one. No fsync: the
    ledger is the durable record and results.tsv is rebuilt from it when they differ."""
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def metric_name(contract: str | None) -> str:
    """The metric's name in a run's contract JSON; "metric" before the run is recorded."""
    return json.loads(contract)["metric"]["name"] if contract is not None else "metric"


def header(metric: str) -> str:
    return f"commit\t{sanitize.field(metric)}\tmemory_gb\tstatus\tdescription\n"


def line(row: sqlite3.Row) -> str:
    """One experiment: commit, the metric, memory_gb, status, description (sanitised).

    memory_gb is the peak VRAM when the experiment had a GPU, else the peak host memory.
    """
    metric = f"{row['metric']:.6f}" if row["metric"] is not None else "0.000000"
    vram, host = row["peak_vram_bytes"], row["peak_memory_bytes"]
    peak = vram if vram is not None else host
    gb = peak / 1024**3 if peak else 0.0  # autoresearch's one decimal, finer below 0.1
    mem = f"{gb:.1f}" if gb >= 0.1 or not peak else f"{gb:.3f}"
    desc = sanitize.field(row["description"] or "") or "-"
    return f"{(row['commit_sha'] or '-------')[:7]}\t{metric}\t{mem}\t{row['status']}\t{desc}\n"


_COLUMNS = (
    "e.id, e.commit_sha, e.metric, e.peak_vram_bytes, e.peak_memory_bytes, e.status, e.description"
)


def append(path: Path, db: sqlite3.Connection, metric: str) -> Path:
    """Bring results.tsv at `path` up to date with the ledger's connection `db`: the finished
    experiments it lacks, appended. The caller holds the ledger's lock."""
    db.execute(TABLE)
    last = db.execute("SELECT MAX(line), MAX(end_byte) FROM tsv_row").fetchone()
    lines, known = (last[0] or 0), last[1]
    head = header(metric)
    known = len(head.encode()) if known is None else known
    size = path.stat().st_size if path.exists() else -1
    if size < known:  # missing, or cut short by hand: whole from the ledger
        known = rebuild(path, db, head).stat().st_size
    elif size > known:  # a kill after a write, before the ledger knew of it
        os.truncate(path, known)
    new = db.execute(
        f"SELECT {_COLUMNS} FROM experiment e LEFT JOIN tsv_row t ON t.experiment = e.id "
        "WHERE e.phase = 'done' AND t.experiment IS NULL ORDER BY e.finished, e.id"
    ).fetchall()
    if not new:
        return path
    records, data = [], b""
    for i, row in enumerate(new, lines + 1):
        data += line(row).encode()
        records.append((row["id"], i, known + len(data)))
    _append_bytes(path, data)
    with db:  # only now does the ledger know the file holds them
        db.executemany("INSERT INTO tsv_row (experiment, line, end_byte) VALUES (?,?,?)", records)
    return path


def _append_bytes(path: Path, data: bytes) -> None:
    """Whole lines at the end of the file, in one write where the kernel allows."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def rebuild(path: Path, db: sqlite3.Connection, head: str) -> Path:
    """The whole file from the rows the ledger says it holds, in their order (atomically);
    the sizes the ledger records are those of the new file."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM experiment e JOIN tsv_row t ON t.experiment = e.id ORDER BY t.line"
    ).fetchall()
    text, ends, size = head, [], len(head.encode())
    for r in rows:
        text += line(r)
        size += len(line(r).encode())
        ends.append((size, r["id"]))
    with db:
        db.executemany("UPDATE tsv_row SET end_byte=? WHERE experiment=?", ends)
    return atomic_write(path, text)
