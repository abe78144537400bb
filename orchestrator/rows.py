"""The ledger's experiment rows, read incrementally: the cost of a read does not grow with
the night.

A row in phase `done` never changes again (nothing in the ledger writes to one), so
each is built into an `Experiment` once and kept; a read asks SQLite, by primary
key, only for the rows it has not seen and the ones not done at the last read (every
row is new once: ids only grow, and a dropped id stays watched). Readers in other processes (`report --serve`, `status`) stay right
too: what they keep is only what can no longer change.
"""

from __future__ import annotations

import bisect
import sqlite3
from collections.abc import Callable

from orchestrator.experiment import Experiment

Query = Callable[..., list[sqlite3.Row]]


class Rows:
    def __init__(self) -> None:
        self._done: list[Experiment] = []
        """The rows in phase `done`, by id (kept in order: a read never sorts the night)."""
        self._open: set[int] = set()
        self._seen = -1  # the highest id read so far

    def read(self, query: Query) -> list[Experiment]:
        """Every experiment, by id, as `SELECT * FROM experiment ORDER BY id` would give them.
        The caller holds the ledger's lock."""
        marks = ",".join("?" * len(self._open))
        rows = query(  # by the primary key only: what is new, and what was still open
            "SELECT * FROM experiment WHERE id > ?" + (f" OR id IN ({marks})" if marks else ""),
            self._seen,
            *sorted(self._open),
        )
        gone = set(self._open)  # an open row may be dropped (a proposal that never happened)
        still: list[Experiment] = []
        for row in rows:
            e = Experiment.from_row(row)
            gone.discard(e.id)
            if e.phase == "done":
                bisect.insort(self._done, e, key=_id)  # nearly always at the end
            else:
                still.append(e)
            self._seen = max(self._seen, e.id)
        # A dropped id stays watched: a later row may take it again (ids are MAX + 1).
        self._open = {e.id for e in still} | gone
        out = list(self._done)
        for e in sorted(still, key=_id):  # the few in flight, in their places
            bisect.insort(out, e, key=_id)
        return out


def _id(e: Experiment) -> int:
    return e.id
