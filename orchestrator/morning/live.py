"""The live terminal view during `run` (rich): what runs now against its time
budget, the best so far and its delta from the baseline, the counts, the cost,
and the last few experiments. Drawn from the ledger, so it shows exactly what is
recorded. Without a terminal it is off and the run prints plain log lines.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator import sanitize
from orchestrator.contract.model import Contract, Metric
from orchestrator.experiment import IN_FLIGHT, Experiment
from orchestrator.ledger import Ledger
from orchestrator.morning.summary import summary

RECENT = 6
COLOURS = {
    "keep": "green",
    "discard": "grey50",
    "crash": "red",
    "refused": "red",
    "duplicate": "grey50",
}


def render(ledger: Ledger, contract: Contract, now: float | None = None) -> RenderableType:
    """One frame of the view, from what the ledger holds now."""
    now = time.time() if now is None else now
    info = ledger.run()
    if info is None:
        return Text("starting…")
    exps = ledger.experiments()
    d = summary(info, exps, contract)
    flying = _in_flight(exps, contract, now)
    done = [r for r in d["experiments"] if r["status"] is not None][-RECENT:]
    parts: list[RenderableType] = [_head(d, contract.metric), _counts(d)]
    if flying.row_count:
        parts += [Text("in flight", style="bold"), flying]
    if done:
        parts += [Text("latest", style="bold"), _latest(done, contract.metric)]
    return Group(*parts)


def _head(d: dict[str, Any], m: Metric) -> Text:
    """The run, its metric and the best so far against the baseline."""
    head = Text()
    head.append(f"run {d['tag']}", style="bold")
    head.append(f" · {m.name} ({'lower' if m.goal == 'min' else 'higher'} is better) · ")
    if d["best"] is not None:
        head.append(f"best {d['best']:.6g}", style="bold green")
        if d["delta"] is not None:
            head.append(f" (Δ {d['delta']:+.6g} from the baseline {d['baseline']:.6g})")
    else:
        head.append("measuring the baseline…")
    return head


def _counts(d: dict[str, Any]) -> Text:
    """The outcomes so far, the agent's cost and how busy the slots are."""
    c = d["counts"]
    counts = Text(
        f"{c['keep']} keep · {c['discard']} discard · {c['crash']} crash · {c['refused']} refused"
        + (f" · {c['duplicate']} duplicate" if c["duplicate"] else "")
        + f" · agent ${d['cost_usd']:.2f}"
    )
    if d["duty_cycle"] is not None:
        counts.append(f" · {d['slots']} slot(s), duty {d['duty_cycle']:.0%}")
    return counts


def _in_flight(exps: list[Experiment], contract: Contract, now: float) -> Table:
    """One row per experiment in flight, its elapsed time against its time budget."""
    flying = Table.grid(padding=(0, 1))
    for e in exps:
        if e.phase not in IN_FLIGHT:
            continue
        runs = contract.budget.baseline_repeats if e.id == 0 else contract.metric.repeats
        budget = contract.budget.seconds * runs
        elapsed = max(0.0, now - e.ran_from) if e.ran_from else 0.0
        state = (
            "queued"
            if e.ran_from is None
            else ("confirming" if e.phase == "confirming" else "running")
        )
        flying.add_row(
            Text(f"#{e.id}", style="bold"),
            Text(state, style="cyan"),
            ProgressBar(total=budget, completed=min(elapsed, budget), width=30),
            Text(f"{elapsed:5.0f}/{budget:.0f} s"),
            Text(sanitize.field(e.description)[:60]),
        )
    return flying


def _latest(done: list[dict[str, Any]], m: Metric) -> Table:
    """The last few finished experiments (summary rows), coloured by outcome."""
    recent = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for col in ("#", "status", m.name, "Δ", "description"):
        recent.add_column(col)
    for r in done:
        delta = "" if r["delta"] is None else f"{r['delta']:+.6g}"
        value = "" if r["metric"] is None else f"{r['metric']:.6g}"
        recent.add_row(
            str(r["id"]),
            Text(r["status"], style=COLOURS.get(r["status"], "")),
            value,
            delta,
            sanitize.field(r["description"])[:70],
        )
    return recent


class LiveView:
    """A rich Live display on stderr while it is a terminal; log lines are printed above it."""

    def __init__(self, ledger: Ledger, contract: Contract, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.ledger, self.contract = ledger, contract
        self._live: Live | None = None

    @property
    def active(self) -> bool:
        return self._live is not None

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(
                console=self.console,
                refresh_per_second=2,
                transient=False,
                get_renderable=self._frame,
            )
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _frame(self) -> RenderableType:
        try:
            return render(self.ledger, self.contract)
        except Exception as e:  # a frame must never take the run down
            return Text(f"(live view: {type(e).__name__}: {e})")

    def say(self, message: str) -> None:
        if self._live is not None:
            self._live.console.print(message, markup=False, highlight=False)
        else:
            self.console.print(message, markup=False, highlight=False, soft_wrap=True)
