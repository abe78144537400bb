"""Several agents in one night (`agent.kind = "portfolio"`): each proposal goes to one member,
chosen by a bandit rule on what each has yielded.

Neither a code-editing agent nor a classical tuner is best everywhere, so a night may
run both and give its proposals to whichever is winning. A member's yield is the
improvement its merged keeps brought (each over the best it replaced, in the goal's
direction) per sandbox-second its experiments took; the next proposal goes to the member
with the highest

    yield / the best member's yield + explore * sqrt(2 ln N / n)

(UCB1: n proposals made by the member, N by all; a member not yet tried goes first, in
the order the contract lists them). Each experiment records its member (`agent`), so the
rule reads the ledger's history and a resumed night goes on with the same counts;
`status` and the report show each member's share and yield (`yields`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.agents import Agent, Context, Proposal
from orchestrator.errors import ProposalRefused
from orchestrator.experiment import Experiment
from orchestrator.schema import resolve

if TYPE_CHECKING:
    from orchestrator.agents.config import PortfolioAgentConfig
    from orchestrator.contract.model import Contract


@dataclass(frozen=True)
class Yield:
    """One member's record so far."""

    proposals: int
    kept: int
    gain: float
    """Improvement its merged keeps brought, in the metric's units, in the goal's direction."""
    sandbox_s: float
    cost_usd: float

    @property
    def per_s(self) -> float:
        return self.gain / self.sandbox_s if self.sandbox_s > 0 else 0.0


def yields(experiments: list[Experiment], goal: str, members: list[str]) -> dict[str, Yield]:
    """Each member's proposals, keeps and gain, from the experiments it is recorded on."""
    sign = 1.0 if goal == "max" else -1.0
    stats = {m: [0, 0, 0.0, 0.0, 0.0] for m in members}
    best: float | None = None
    for e in experiments:
        gained = 0.0
        if e.holds_best and e.metric is not None:
            if best is not None:
                gained = max(0.0, sign * (e.metric - best))
            best = e.metric
        if e.agent in stats:
            s = stats[e.agent]
            s[0] += 1
            s[1] += int(e.id > 0 and e.holds_best)
            s[2] += gained
            s[3] += e.wall_s or 0.0
            s[4] += e.cost_usd or 0.0
    return {m: Yield(int(s[0]), int(s[1]), s[2], s[3], s[4]) for m, s in stats.items()}


def build(
    cfg: PortfolioAgentConfig, contract: Contract, run_dir: Path, say: Callable[[str], None]
) -> Portfolio:
    """`agent.kind = "portfolio"` (its `builder`): each member built as its own kind would be,
    with a state folder of its own."""
    agents = []
    for label, member in zip(cfg.labels(), cfg.members, strict=True):
        agents.append((label, resolve(member.builder)(member, contract, run_dir / label, say)))
    return Portfolio(agents, contract.metric.goal, cfg.explore)


class Portfolio:
    in_turn = False

    def __init__(self, members: list[tuple[str, Agent]], goal: str, explore: float) -> None:
        self.members = dict(members)
        self.goal, self.explore = goal, explore
        self._lock = threading.Lock()
        self._asked: dict[int, str] = {}
        """Proposals in flight, by experiment: their rows do not say their member yet."""
        self._spent: set[str] = set()
        """Members with nothing more to propose (a replay's last patch was used)."""

    def cancel(self) -> None:
        for agent in self.members.values():
            agent.cancel()

    def choose(self, history: list[Experiment]) -> str:
        """The member the next proposal goes to (UCB1 over yield per sandbox-second)."""
        done = yields(history, self.goal, list(self.members))
        counts = {m: y.proposals for m, y in done.items()}
        for m in self._asked.values():
            counts[m] += 1
        able = [m for m in self.members if m not in self._spent]
        untried = [m for m in able if counts[m] == 0]
        if untried:
            return untried[0]
        top = max(y.per_s for y in done.values()) or 1.0
        total = sum(counts.values())

        def score(m: str) -> float:
            bonus = self.explore * math.sqrt(2 * math.log(total) / counts[m])
            return done[m].per_s / top + bonus

        return max(able, key=score)

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        """The chosen member's proposal; a member with nothing more is left out from then on,
        and the night ends when every member has nothing more."""
        while True:
            with self._lock:
                if len(self._spent) == len(self.members):
                    return None
                label = self.choose(ctx.history)
                self._asked[ctx.experiment] = label
            try:
                made = self.members[label].propose(ctx, scratch)
            except ProposalRefused as e:
                e.by = label
                raise
            finally:
                with self._lock:
                    self._asked.pop(ctx.experiment, None)
            if made is not None:
                return replace(made, by=label)
            with self._lock:
                self._spent.add(label)
