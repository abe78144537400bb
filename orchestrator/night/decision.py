"""crash / discard / keep — a pure function of the outcome, the best so far and the contract.

No Docker, no git, no clock: unit-testable on plain values (STYLE.md #10).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from orchestrator.contract.constraints import parse_constraint
from orchestrator.contract.model import Metric
from orchestrator.experiment import Status


@dataclass(frozen=True)
class Outcome:
    """What the orchestrator measured about one run of a candidate."""

    exit_code: int | None
    timed_out: bool
    oom_killed: bool
    metrics: dict[str, float]
    loc: int | None = None
    budget_s: float | None = None
    memory_limit: int | None = None
    disk_full: bool = False
    disk_limit: int | None = None
    crash: str | None = None
    """A crash the orchestrator stated itself (ContainerResult.crash), with its reason."""


@dataclass(frozen=True)
class Best:
    metric: float
    loc: int | None


@dataclass(frozen=True)
class Decision:
    status: Status
    reason: str
    metric: float | None = None


def crash_reason(outcome: Outcome, metric_name: str) -> str | None:
    if outcome.crash:
        return outcome.crash
    if outcome.oom_killed:  # before the timeout: a run the OOM killer hit is an OOM, said so
        limit = f" ({outcome.memory_limit / 1024**2:.0f} MiB)" if outcome.memory_limit else ""
        later = ", then killed at the budget" if outcome.timed_out else ""
        return f"out of memory: killed at the memory limit{limit}{later}"
    if outcome.timed_out:
        budget = f" of {outcome.budget_s:g} s" if outcome.budget_s else ""
        return f"timeout: killed at the budget{budget}"
    if outcome.disk_full and outcome.exit_code != 0:
        limit = f" ({outcome.disk_limit / 1024**2:.0f} MiB)" if outcome.disk_limit else ""
        return f"disk cap: /workspace reached sandbox.disk{limit}"
    if outcome.exit_code != 0:
        return f"exit code {outcome.exit_code}"
    value = outcome.metrics.get(metric_name)
    if value is None:
        return f"no '{metric_name}' metric in the output"
    if not math.isfinite(value):
        return f"metric '{metric_name}' is {value}"
    return None


def gain(goal: str, before: float, after: float) -> float:
    """How much better `after` is than `before` in the goal's direction (negative: worse)."""
    return before - after if goal == "min" else after - before


def noise_band(metric: Metric, sigma: float | None) -> float:
    """The smallest gain that counts: max(min_improvement, z·σ)."""
    return max(metric.min_improvement, metric.z * sigma if sigma else 0.0)


def aggregate(values: list[float], how: str) -> float:
    if how == "mean":
        return statistics.fmean(values)
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    return statistics.median(values)


def combine(runs: list[dict[str, float]], how: str) -> dict[str, float]:
    """One value per metric over repeated runs (metrics missing from a run are left out of it)."""
    names = {k for r in runs for k in r}
    return {k: aggregate([r[k] for r in runs if k in r], how) for k in sorted(names)}


def decide(
    outcome: Outcome,
    best: Best | None,
    metric: Metric,
    *,
    sigma: float | None = None,
    baseline: dict[str, float] | None = None,
) -> Decision:
    """Judge a candidate. `best` is None for the baseline (experiment 0).

    `sigma` is the baseline's noise; `baseline` its metrics, for relative constraints.
    """
    why = crash_reason(outcome, metric.name)
    if why is not None:
        return Decision("crash", why, outcome.metrics.get(metric.name))
    value = outcome.metrics[metric.name]
    for text in metric.constraints:
        violated = parse_constraint(text).check(outcome.metrics, baseline or outcome.metrics)
        if violated:
            return Decision("crash" if best is None else "discard", violated, value)
    if best is None:
        return Decision("keep", "baseline", value)
    band = noise_band(metric, sigma)
    better = gain(metric.goal, best.metric, value)
    if better > band:
        return Decision(
            "keep", f"improved by {better:.6g} (best was {best.metric:.6g}; band {band:.3g})", value
        )
    fewer = (
        outcome.loc is not None
        and best.loc is not None
        and outcome.loc < best.loc
        and abs(better) <= band
    )
    if fewer:
        assert best.loc is not None and outcome.loc is not None
        return Decision(
            "keep", f"equal within {band:.3g} with {best.loc - outcome.loc} fewer lines", value
        )
    if better < -band:
        return Decision("discard", f"worse by {-better:.6g} (best {best.metric:.6g})", value)
    return Decision(
        "discard", f"within the noise band ±{band:.3g} of the best {best.metric:.6g}", value
    )
