"""What people and agents tell a night while it runs, kept in its ledger's event table.

A person steers every later proposal (`autoresearch steer`) and pauses or resumes new
proposals (`pause` / `resume`); proposers leave notes for each other (a CLI's `NOTE:`
lines, Claude's `submit(notes=...)`). `Ledger` carries these methods; they need only its
`event` and `events`.
"""

from __future__ import annotations

from typing import Any


class Notebook:
    """The notes of one run (mixed into `Ledger`)."""

    def event(self, kind: str, detail: str, exp_id: int | None = None) -> None:
        raise NotImplementedError

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def steer(self, text: str) -> None:
        """A person's note to every later proposal (`autoresearch steer`), kept with its time."""
        self.event("steer", text)

    def steering(self) -> list[tuple[float, str]]:
        """The notes a person gave while the night ran: (time, text), oldest first."""
        return [(e["ts"], e["detail"]) for e in self.events("steer")]

    def pause(self, paused: bool) -> None:
        """A person stops (or starts again) new proposals (`autoresearch pause` / `resume`)."""
        self.event("pause" if paused else "unpause", "by a person")

    def paused(self) -> bool:
        """Whether the latest switch a person made is a pause."""
        switches = sorted(self.events("pause") + self.events("unpause"), key=lambda e: e["id"])
        return bool(switches) and switches[-1]["kind"] == "pause"

    def note(self, exp_id: int, text: str) -> None:
        """One of proposal `exp_id`'s notes for the other proposers."""
        self.event("note", text, exp_id)

    def notes(self) -> list[tuple[int, str]]:
        """The proposers' notes: (experiment, text), oldest first."""
        return [(e["experiment"], e["detail"]) for e in self.events("note")]
