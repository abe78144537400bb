"""Where the next proposal starts: the night's best (greedy), or a parent chosen by UCB (tree).

A greedy night climbs one hill: a candidate worse than the best is never built upon, so
a change that must pass through a worse state to reach a better one (a deceptive
plateau) is out of reach. A tree night keeps every measured commit as a node: the
baseline and each experiment that ran to a metric (kept or discarded; crashes, refusals
and duplicates are no nodes). Each proposal starts from the node with the highest

    value + c * sqrt(ln(N + 1) / (n + 1))

where value is the node's score scaled to [0, 1] between the worst and the best node
(1 = the best, in the goal's direction), n the proposals started from it so far, N all
of them, and c the contract's `search.c`. Ties go to the better score, then the older
node. Candidates are judged against the night's best as always, and a winner merges
its exact tree onto the run branch (merges.py), whatever node it started from.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from orchestrator.contract.model import Contract, TreeSearch
from orchestrator.experiment import Experiment
from orchestrator.night.decision import gain


def parent_for(contract: Contract, read: Callable[[], list[Experiment]], best: str) -> str:
    """The commit the next proposal forks from; `best` is the run branch's head, `read` the
    ledger's experiments (read only by a tree search)."""
    search = contract.search
    if not isinstance(search, TreeSearch):
        return best
    experiments = read()
    nodes = _nodes(experiments)
    if not nodes:
        return best
    visits = Counter(e.parent for e in experiments if e.id > 0)
    total = sum(visits[n.commit_sha or ""] for n in nodes)
    metrics = [n.metric for n in nodes if n.metric is not None]
    lo, hi = min(metrics), max(metrics)
    worst = hi if contract.metric.goal == "min" else lo

    def value(e: Experiment) -> float:
        assert e.metric is not None
        if hi == lo:
            return 1.0
        return gain(contract.metric.goal, worst, e.metric) / (hi - lo)

    def ucb(e: Experiment) -> tuple[float, float, int]:
        n = visits[e.commit_sha or ""]
        bonus = search.c * math.sqrt(math.log(total + 1) / (n + 1))
        assert e.metric is not None
        return value(e) + bonus, gain(contract.metric.goal, worst, e.metric), -e.id

    chosen = max(nodes, key=ucb)
    assert chosen.commit_sha is not None
    return chosen.commit_sha


def _nodes(experiments: list[Experiment]) -> list[Experiment]:
    """The measured commits a proposal may start from."""
    return [
        e
        for e in experiments
        if e.phase == "done"
        and e.metric is not None
        and e.commit_sha
        and (e.id == 0 or e.status in ("keep", "discard"))
    ]
