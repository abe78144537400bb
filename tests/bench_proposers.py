"""`make bench`, the proposers: how busy the slots stay while a command agent thinks.

Sleep-bound experiments (the cores are not the limit) and a command agent that
sleeps as long as it "thinks", then adds one comment line. Duty = the sandbox
seconds of the candidates over slots × the window from the first candidate's
start to the last one's end (the baseline, measured alone, is not in it). The
ideal wall time is the first proposal's think plus ceil(N / slots) experiment
lengths. One proposer at a time (`budget.proposers = 1`, the old behaviour) is
measured in the same run for the ratio.

    python -m tests.bench_proposers
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, make_repo

RUN_S = 3.0


def proposer_night(
    tmp: Path, tag: str, slots: int, experiments: int, think_s: float, proposers: int | None = None
) -> tuple[float, float, float]:
    """(duty, wall s, ideal wall s) of one night after its baseline."""
    repo = make_repo(tmp / tag, {"impl.py": IMPL})
    agent = f'sleep {think_s:g}; echo "# idea $AUTORESEARCH_EXPERIMENT" >> impl.py'
    budget: dict[str, object] = {"parallel": slots, "pipeline": 1, "baseline_repeats": 1,
                                 "max_experiments": experiments, "seconds": 60}  # fmt: skip
    if proposers is not None:
        budget["proposers"] = proposers
    contract = build_contract(
        {"implementation": {"paths": ["impl.py"]},
         "evaluator": {"command": f"sleep {RUN_S:g}; echo score: 1", "isolation": "shared"},
         "metric": {"name": "score", "goal": "min"},
         "agent": {"kind": "command", "command": agent, "timeout_s": 600, "on_host": True}, "budget": budget},
        {}, "bench",
    )  # fmt: skip
    run = start_run(
        repo, tag, contract, "bench", DockerSandbox(), say=lambda _m: None, backoff=Backoff(1, 5)
    )
    run.execute()
    exps = [e for e in run.ledger.experiments() if e.id > 0 and e.ran_from and e.ran_to]
    assert len(exps) == experiments, [(e.id, e.status, e.reason) for e in exps]
    t0, t1 = min(e.ran_from for e in exps), max(e.ran_to for e in exps)  # type: ignore[type-var]
    busy = sum(e.ran_to - e.ran_from for e in exps)  # type: ignore[operator]
    each = statistics.median(e.ran_to - e.ran_from for e in exps)  # type: ignore[operator]
    base = run.ledger.get(0)
    assert base is not None and base.ran_to is not None
    start = min(e.started for e in run.ledger.experiments() if e.id > 0)
    wall = t1 - max(start, base.ran_to)  # from the moment candidates could run
    ideal = max(0.0, think_s - (base.ran_to - start)) + math.ceil(experiments / slots) * each
    return busy / (slots * (t1 - t0)), wall, ideal


def section() -> None:
    print(f"\nproposers: sleep-bound experiments ({RUN_S:g} s), a command agent that thinks")
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        old, _w, _i = proposer_night(Path(tmp), "one-proposer", 4, 16, RUN_S, proposers=1)
        four, wall4, ideal4 = proposer_night(Path(tmp), "four", 4, 16, RUN_S)
        eight, _w8, _i8 = proposer_night(Path(tmp), "eight", 8, 32, 2 * RUN_S)
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| duty, 4 slots, the agent thinks {RUN_S:g} s per {RUN_S:g} s experiment (16) | "
          f"{four:.1%} (one proposer at a time: {old:.1%}) | ≥ 95% |")  # fmt: skip
    print(f"| wall time of that night vs the ideal ({wall4:.1f} s vs {ideal4:.1f} s) | "
          f"{wall4 / ideal4:.2f}× | ≤ 1.15× |")  # fmt: skip
    print(f"| duty, 8 slots, the agent thinks {2 * RUN_S:g} s per {RUN_S:g} s experiment (32) | "
          f"{eight:.1%} | ≥ 90% |")  # fmt: skip


if __name__ == "__main__":
    section()
