"""The night: propose, dispatch, judge, decide, merge, until a stop rule fires.

See README.md in this folder for what each file holds. The driver (`driver.py`)
owns the lifecycle and the main loop; the pieces take what they need (the
ledger, the workspace, a `note` callback) and return what the driver must do
next, so nothing here calls back into the driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Note = Callable[..., None]
"""`note(event, sentence, **fields)`: one event for events.jsonl and the terminal."""
Event = Callable[..., None]
"""`event(name, **fields)`: one event for events.jsonl only."""
Say = Callable[[str], None]
"""Where sentences for the person go (the terminal, or the live view above it)."""


@dataclass
class Backoff:
    """Pauses between retries of an infrastructure failure (seconds)."""

    first: float = 5.0
    cap: float = 300.0
