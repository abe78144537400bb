"""`make bench`, the proposers: how busy the slots stay while a command agent thinks.

Sleep-bound experiments (the cores are not the limit) and a command agent that
sleeps as long as it "thinks", asks a fake Messages API on loopback for one answer
(so its tokens and USD are counted as a real CLI's are), then adds one comment line.
The agent runs where users get it by default, **in its own container** (its one way
out the gateway), and on the host (`agent.on_host = true`) beside it; the experiments in
the default harness isolation. Duty = the
sandbox seconds of the candidates over slots × the window from the first
candidate's start to the last one's end (the baseline, measured alone, is not in
it). The ideal wall time is the first proposal's think plus ceil(N / slots)
experiment lengths. Peak = the most proposals in flight at once, over the night and
before the third proposal ended. The targets are read on nights of 16 and 12 rounds
(`LONG`); the four-round nights the issue tried (`SHORT`) are measured beside them: there
the ramp, paid once a night, and the ragged last round are a quarter of the night. One proposer at a time (`budget.proposers = 1`,
the old behaviour) is measured in the same run for the ratio.

    python -m tests.bench_proposers
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, make_repo
from tests.fake_anthropic import FakeAnthropic, text

RUN_S = 3.0
KEY_ENV = "AUTORESEARCH_BENCH_FAKE_KEY"
ASK = (
    'python3 -c "import json, os, urllib.request as u; u.urlopen(u.Request('
    "os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', json.dumps({'model': 'claude-sonnet-5-5', "
    "'max_tokens': 100, 'stream': True, 'messages': [{'role': 'user', 'content': 'idea?'}]}).encode(), "
    "{'content-type': 'application/json', 'x-api-key': 'x', 'anthropic-version': '2023-06-01'})).read()\""
)
"""One Messages API call, as a CLI makes it (the gateway adds the key and counts the usage)."""
SCORE = "echo score: -$(grep -c '# idea' impl.py)"
"""Each idea line is an improvement over the commit it forked from (no Python: the cores are
not what is measured)."""


@dataclass(frozen=True)
class Night:
    duty: float
    wall_s: float
    ideal_s: float
    peak: int
    peak_early: int
    usd_per_keep: float | None
    steady: float
    """Duty after the first two rounds of experiments: the night without its ramp."""


def proposer_night(tmp: Path, tag: str, slots: int, experiments: int, think_s: float, *,
                   in_container: bool = True, proposers: int | None = None) -> Night:  # fmt: skip
    """One night after its baseline, the agent in its container or on the host."""
    repo = make_repo(tmp / tag, {"impl.py": IMPL})
    command = f'sleep {think_s:g}; {ASK}; echo "# idea $AUTORESEARCH_EXPERIMENT" >> impl.py'
    budget: dict[str, object] = {"parallel": slots, "pipeline": 1, "baseline_repeats": 1,
                                 "max_experiments": experiments, "seconds": 60}  # fmt: skip
    if proposers is not None:
        budget["proposers"] = proposers
    with FakeAnthropic() as api:
        for _ in range(experiments * 2):
            api.message(text("add a line"))
        agent: dict[str, object] = {"kind": "command", "command": command, "timeout_s": 600}
        if in_container:
            agent.update(base_url=api.base_url, key_env=KEY_ENV)
        else:  # the host's own environment: the CLI calls the fake directly
            agent.update(on_host=True, command=f"ANTHROPIC_BASE_URL={api.base_url} {command}")
        contract = build_contract(
            {"implementation": {"paths": ["impl.py"]},
             "evaluator": {"command": f"sleep {RUN_S:g}; {SCORE}"},  # harness: the default
             "metric": {"name": "score", "goal": "min"}, "agent": agent, "budget": budget},
            {}, "bench",
        )  # fmt: skip
        run = start_run(repo, tag, contract, "bench", DockerSandbox(), say=lambda _m: None,
                        backoff=Backoff(1, 5))  # fmt: skip
        run.execute()
    every = run.ledger.experiments()
    exps = [e for e in every if e.id > 0 and e.ran_from and e.ran_to]
    assert len(exps) == experiments, [(e.id, e.status, e.reason) for e in every]
    t0, t1 = min(e.ran_from for e in exps), max(e.ran_to for e in exps)  # type: ignore[type-var]
    busy = sum(e.ran_to - e.ran_from for e in exps)  # type: ignore[operator]
    each = statistics.median(e.ran_to - e.ran_from for e in exps)  # type: ignore[operator]
    base = every[0]
    assert base.ran_to is not None
    start = min(e.started for e in every if e.id > 0)
    wall = t1 - max(start, base.ran_to)  # from the moment candidates could run
    ideal = max(0.0, think_s - (base.ran_to - start)) + math.ceil(experiments / slots) * each
    keeps = sum(1 for e in exps if e.status == "keep" and e.merged)
    spent = [e.cost_usd for e in every if e.cost_usd is not None]
    usd = sum(spent) / keeps if keeps and spent else None
    peaks = run.proposers.peak, run.proposers.peak_early
    ts = sorted(e.ran_from for e in exps)[min(2 * slots, len(exps) - 1)]  # type: ignore[type-var]
    late = sum(max(0.0, e.ran_to - max(e.ran_from, ts)) for e in exps)  # type: ignore[operator]
    steady = late / (slots * (t1 - ts)) if t1 > ts else float("nan")
    return Night(busy / (slots * (t1 - t0)), wall, ideal, *peaks, usd, steady)


def _row(what: str, n: Night, target: str) -> str:
    usd = f"${n.usd_per_keep:.4f}" if n.usd_per_keep is not None else "—"
    return (f"| {what} | {n.duty:.1%} | {n.steady:.1%} | {n.wall_s / n.ideal_s:.2f}× ({n.wall_s:.1f} s vs "
            f"{n.ideal_s:.1f} s) | {n.peak} / {n.peak_early} | {usd} | {target} |")  # fmt: skip


LONG = {4: 64, 8: 96}
"""A night's experiments per slot count: sixteen and twelve rounds, so the ramp (paid once a
night: the evidence rule) and the ragged last round weigh what they weigh in a real night."""
SHORT = {4: 16, 8: 32}
"""Four rounds: the nights the issue tried, where the ramp and the last round weigh most."""


def section() -> None:
    os.environ.setdefault(KEY_ENV, "sk-bench-fake")
    print(f"\nproposers: sleep-bound experiments ({RUN_S:g} s), a command agent that thinks, "
          "then asks a fake Messages API once (tokens counted)")  # fmt: skip
    rows = []
    goals = {4: "duty ≥ 95%, early peak ≤ 5", 8: "duty ≥ 90%, early peak ≤ 9"}
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        for where, inside in (("in its container (default)", True), ("on the host", False)):
            for slots, think in ((4, RUN_S), (8, 2 * RUN_S)):
                n = LONG[slots]
                night = proposer_night(Path(tmp), f"{slots}-{n}-{inside}", slots, n, think,
                                       in_container=inside)  # fmt: skip
                rows.append(_row(f"agent {where}, {slots} slots, thinks {think:g} s per {RUN_S:g} s "
                                 f"experiment ({n})", night, goals[slots]))  # fmt: skip
        for slots, think in ((4, RUN_S), (8, 2 * RUN_S)):
            n = SHORT[slots]
            night = proposer_night(Path(tmp), f"{slots}-{n}-short", slots, n, think)
            rows.append(_row(f"agent in its container, {slots} slots, thinks {think:g} s, a short "
                             f"night ({n}: four rounds)", night, "beside it"))  # fmt: skip
        old = proposer_night(Path(tmp), "one-proposer", 4, 16, RUN_S, proposers=1)
    print("| night | duty | duty after two rounds | wall vs ideal | peak in flight / before 3 ended "
          "| agent USD per kept improvement | target |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(_row("agent in its container, one proposer at a time (the old behaviour), 4 slots (16)",
               old, "for the ratio"))  # fmt: skip


if __name__ == "__main__":
    section()
