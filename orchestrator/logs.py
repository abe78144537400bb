"""Structured event log of a run: JSON lines in `.autoresearch/<tag>/events.jsonl`.

One line per event, flushed as written, so a killed run keeps everything up to
its last step. The terminal gets the same events as plain sentences.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, TextIO

import structlog


class EventLog:
    def __init__(self, run_dir: Path) -> None:
        self._file: TextIO = (run_dir / "events.jsonl").open("a", encoding="utf-8")
        self.log = structlog.wrap_logger(
            structlog.PrintLogger(self._file),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(sort_keys=False),
            ],
        )

    def event(self, name: str, **fields: Any) -> None:
        """Best effort: the ledger is the durable record, and a full disk must not stop the run."""
        with contextlib.suppress(OSError):
            self.log.info(name, **fields)

    def close(self) -> None:
        self._file.close()
