"""The terminal while a night runs: the live view, sentences above it, and the signals.

SIGTERM becomes KeyboardInterrupt for the length of a night, so every `finally`
removes its container; either one ends the command with exit 130 and the line
that says how to resume. A night whose morning report could not be written ends
with exit 3 after saying why (its results are kept).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator import sanitize

if TYPE_CHECKING:
    from orchestrator.morning.live import LiveView
    from orchestrator.night.driver import Night


REPORT_FAILED = 3
"""The exit status of a night that ran to its end but whose report could not be written."""


def _on_sigterm(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so `finally` blocks remove the container


class Terminal:
    """Where sentences go: above the live view while one is drawn, else to stderr."""

    def __init__(self) -> None:
        self.live: LiveView | None = None

    def say(self, msg: str) -> None:
        msg = sanitize.terminal(msg)  # sentences quote candidate and agent text
        if self.live is not None and self.live.active:
            self.live.say(msg)
        else:
            click.echo(msg, err=True)

    def night(self, make: Callable[[], Night], tag: str) -> None:
        """Make the night (`make`: start or reopen the run) and run it to its end under the live
        view, then write the morning report. SIGTERM and Ctrl-C are handled from the first
        moment: before the run exists nothing is left; after, `resume` continues it."""
        from orchestrator.morning.live import LiveView

        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        night: Night | None = None
        try:
            night = make()
            with LiveView(night.ledger, night.contract) as self.live:
                night.execute()
        except KeyboardInterrupt:
            if night is None:
                self.say(f"interrupted before run {tag} began — nothing of it was left")
            else:
                self.say(f"interrupted — `autoresearch resume {tag}` continues where this stopped")
            sys.exit(130)
        finally:
            self.live = None
            signal.signal(signal.SIGTERM, previous)
        report = self.report(night)
        self.say(
            f"results: {night.run_dir / 'results.tsv'}; best commit on branch {night.ws.branch}"
            + (f"; report: {report}" if report else "; no report (see the error above)")
        )
        if report is None:
            sys.exit(REPORT_FAILED)  # the night's work is kept; its morning read is missing

    def report(self, night: Night) -> Path | None:
        """The morning report; a failure to draw it is a bug, said and recorded in the ledger (the
        night's results stay), and the command then ends with REPORT_FAILED."""
        from orchestrator.morning.report import write_report

        try:
            return write_report(night.ledger, night.ws, night.contract)
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            with contextlib.suppress(Exception):  # the line below is said whatever the ledger does
                night.ledger.event("report-failed", why)
            self.say(
                f"error: the morning report could not be written ({why}) — a bug in autoresearch; "
                f"`autoresearch report {night.ws.tag}` retries it and shows the traceback"
            )
            return None
