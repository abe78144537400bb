"""When the night ends: a pure function of the contract and the history."""

from __future__ import annotations

from orchestrator.contract.model import Contract
from orchestrator.experiment import Experiment, best_holder
from orchestrator.night.decision import gain


def best_so_far(experiments: list[Experiment]) -> list[float | None]:
    """The best metric after each experiment (by id): the one merged last among them."""
    out: list[float | None] = []
    holder: Experiment | None = None
    for e in experiments:
        holder = best_holder([e] if holder is None else [holder, e])
        out.append(holder.metric if holder else None)
    return out


def stop_reason(
    c: Contract, experiments: list[Experiment], active_s: float, spent_usd: float
) -> str | None:
    b, m = c.budget, c.metric
    done = [e for e in experiments if e.phase == "done"]
    made = [e for e in experiments if e.phase != "proposing"]  # an agent still works on the rest
    if b.max_experiments is not None and len(made) - 1 >= b.max_experiments:
        return f"max experiments reached ({b.max_experiments})"
    if b.max_hours is not None and active_s >= b.max_hours * 3600:
        return f"max hours reached ({b.max_hours:g} h)"
    if b.max_cost_usd is not None and spent_usd >= b.max_cost_usd:
        return f"max cost reached (${spent_usd:.2f} of ${b.max_cost_usd:g})"
    bests = best_so_far(done)
    best = bests[-1] if bests else None
    if (
        m.target is not None
        and best is not None
        and (best <= m.target if m.goal == "min" else best >= m.target)
    ):
        return f"target reached ({m.name} = {best:.6g}, target {m.target:g})"
    if b.plateau is not None and len(done) > b.plateau:
        start = bests[-b.plateau - 1]
        if (
            start is not None
            and best is not None
            and gain(m.goal, start, best) < abs(start) * b.plateau_pct / 100
        ):
            return f"plateau: {b.plateau} experiments without a {b.plateau_pct:g}% gain"
    return None
