"""`make bench`, the search: greedy against tree search on landscapes with a deceptive plateau.

Each seed draws a landscape over X = 0..29: scores fall from 20 to a local optimum,
rise through a valley at least three steps wide, then fall to 0 further on. The agent
(scripted, in-process) moves X by -1, +1 or +2 from the commit it is given, drawn from
the seed; greedy gives it the best, tree search a UCB-chosen node. Attempts run on an
in-process executor that reads X from the candidate's tree and prints its score: what
is compared is the search, at the same number of experiments, over the same seeds.

    python -m tests.bench_search
"""

from __future__ import annotations

import io
import random
import statistics
import tarfile
import tempfile
from pathlib import Path
from unittest import mock

from orchestrator import runs
from orchestrator.agents import Context, Proposal
from orchestrator.contract.load import build_contract
from orchestrator.executors.attempt import Attempt
from orchestrator.night import Backoff
from orchestrator.sandbox import ContainerResult
from tests.bench_scale import InstantExecutor
from tests.conftest import make_repo

SEEDS = 10
EXPERIMENTS = 40


def landscape(seed: int) -> list[int]:
    rng = random.Random(seed)
    local, valley = rng.randrange(4, 9), rng.randrange(3, 6)
    rise = [6 + 3 * i for i in range(1, valley + 1)]
    top = local + valley
    scores = [20 - (20 - 6) * x // local for x in range(local + 1)]  # down to 6 at `local`
    scores += [r for r in rise]
    width = 30 - len(scores)
    scores += [max(0, rise[-1] - (rise[-1] * (i + 1)) // (width - 4)) for i in range(width)]
    assert len(scores) == 30 and top < 30
    return scores


class Stepper:
    """Moves X by -1, +1 or +2 from the commit it is given."""

    in_turn = False

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed * 7919)

    def cancel(self) -> None:
        """Nothing is ever in flight."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        x = int((scratch / "impl.py").read_text().splitlines()[0].split("=")[1])
        step = self.rng.choice([-1, 1, 2])
        (scratch / "impl.py").write_text(f"X = {min(29, max(0, x + step))}\n")
        return Proposal(f"X {step:+d}")


class Landscape(InstantExecutor):
    """Scores a candidate by the X in its tree."""

    def __init__(self, scores: list[int]) -> None:
        super().__init__()
        self.scores = scores

    def run(self, attempt: Attempt) -> ContainerResult:
        with tarfile.open(fileobj=io.BytesIO(attempt.tree)) as tar:
            member = tar.extractfile("impl.py")
            assert member is not None
            x = int(member.read().decode().splitlines()[0].split("=")[1])
        out = f"score: {self.scores[x]}\n"
        return ContainerResult(0, False, False, 0.01, 50 * 1024**2, 0.01, out)


def night(tmp: Path, seed: int, kind: str) -> float:
    repo = make_repo(tmp / f"{kind}-{seed}", {"impl.py": "X = 0\n"})
    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "true", "isolation": "shared"},
        "metric": {"name": "score", "goal": "min"},
        "budget": {"parallel": 1, "pipeline": 0, "baseline_repeats": 1,
                   "max_experiments": EXPERIMENTS, "seconds": 60},
        "agent": {"kind": "none"}, "search": {"kind": kind},
    }, {}, "bench")  # fmt: skip
    executor, agent = Landscape(landscape(seed)), Stepper(seed)
    with (
        mock.patch.object(runs, "build_executor", lambda *_a: executor),
        mock.patch.object(runs, "build_agent", lambda *_a: agent),
    ):
        run = runs.start_run(repo, kind, contract, "bench", None, say=lambda _m: None,
                             backoff=Backoff(1, 5))  # fmt: skip
    run.execute()
    return min(
        e.metric for e in run.ledger.experiments() if e.status == "keep" and e.metric is not None
    )


def section(seeds: int = SEEDS) -> None:
    finals: dict[str, list[float]] = {"greedy": [], "tree": []}
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        for seed in range(seeds):
            for kind in finals:
                finals[kind].append(night(Path(tmp), seed, kind))
    print(f"\nsearch: {seeds} seeded landscapes with a deceptive plateau (a local optimum of 6, "
          f"a valley 3-5 steps wide, the best 0), {EXPERIMENTS} experiments each, a scripted "
          "agent stepping X by -1/+1/+2")  # fmt: skip
    print("| search | final best, median | spread (min–max) | seeds that reached 0 |")
    print("| --- | --- | --- | --- |")
    for kind, scores in finals.items():
        print(f"| {kind} | {statistics.median(scores):g} | {min(scores):g}–{max(scores):g} | "
              f"{sum(1 for s in scores if s == 0)} of {seeds} |")  # fmt: skip
    better = sum(1 for g, t in zip(finals["greedy"], finals["tree"], strict=True) if t < g)
    print(f"tree better than greedy on {better} of {seeds} seeds")


class Useless:
    """Changes nothing that matters: a comment."""

    in_turn = False

    def cancel(self) -> None:
        """Nothing is ever in flight."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        with (scratch / "impl.py").open("a") as f:
            f.write(f"# note {ctx.experiment}\n")
        return Proposal("a comment")


class Climber(Stepper):
    """Always one step on: every proposal from the best is a win."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        x = int((scratch / "impl.py").read_text().splitlines()[0].split("=")[1])
        text = (scratch / "impl.py").read_text().replace(f"X = {x}", f"X = {min(29, x + 1)}", 1)
        (scratch / "impl.py").write_text(text)
        return Proposal("X +1")


def portfolio_night(tmp: Path, slots: int, proposals: int = 20) -> float:
    """The share of the first `proposals` that went to the member that yields."""
    from orchestrator.agents.portfolio import Portfolio

    repo = make_repo(tmp / f"portfolio-{slots}", {"impl.py": "X = 0\n"})
    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "true", "isolation": "shared"},
        "metric": {"name": "score", "goal": "min"},
        "budget": {"parallel": slots, "pipeline": 0, "baseline_repeats": 1,
                   "max_experiments": proposals, "seconds": 60},
        "agent": {"kind": "none"},
    }, {}, "bench")  # fmt: skip
    scores = list(range(30, 0, -1))  # X = 0 scores 30; every step on is better
    agent = Portfolio([("useless", Useless()), ("climber", Climber(0))], "min", 1.0)
    with (
        mock.patch.object(runs, "build_executor", lambda *_a: Landscape(scores)),
        mock.patch.object(runs, "build_agent", lambda *_a: agent),
    ):
        run = runs.start_run(repo, "pf", contract, "bench", None, say=lambda _m: None,
                             backoff=Backoff(1, 5))  # fmt: skip
    run.execute()
    by = [e.agent for e in run.ledger.experiments() if e.id > 0][:proposals]
    return by.count("climber") / len(by)


def portfolio_section() -> None:
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        shares = {slots: portfolio_night(Path(tmp), slots) for slots in (1, 4)}
    print("\nportfolio: a member whose every proposal wins and one whose proposals change nothing "
          "(UCB1 on improvement per sandbox-second)")  # fmt: skip
    print("| slots | the useful member's share of the first 20 proposals | target |")
    print("| --- | --- | --- |")
    for slots, share in shares.items():
        print(f"| {slots} | {share:.0%} | most (> 50%) |")


if __name__ == "__main__":
    section()
    portfolio_section()
