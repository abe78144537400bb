"""`make bench`, scale: a 1,000-experiment night through the command agent, no-op evaluator.

The every-keep night also runs on the real engine (each attempt a container).

What is measured is the orchestrator's own work per experiment, so the attempts run
on an in-process fake executor (the `Executor` protocol; it answers `score: 1` at
once) instead of containers: propose (the command agent's process, its copy and
prompt), freeze, decide, record, results.tsv; meanwhile `report --serve` (its own
process, as it runs) is asked for the report every 15 s, as the page's reload would,
and rewrites it when the ledger changed. Every idea is a new comment line, so every
candidate is a new tree and a discard (equal score, more code).

- RSS growth: the orchestrator's resident memory at the end minus at experiment 50.
- Cycle time: the time between consecutive experiments' ends; the median of the
  last 100 against the first 100 (after the baseline).
- CPU per experiment: the same, in CPU seconds of the orchestrator and the processes it
  waited for (the agent's command, git): what the other tenants of a loaded box do not move.
- Prompt: the length of the prompt file the command agent is given at #1000 vs #50.

Two nights: every candidate a discard (the history grows by misses), and every candidate
a keep (each scores better than the last: the history grows by wins, the case a tuner or
steady small gains make).

    python -m tests.bench_scale [experiments]
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from orchestrator import runs
from orchestrator.contract.load import build_contract
from orchestrator.contract.model import Contract
from orchestrator.executors.attempt import Attempt
from orchestrator.night import Backoff
from orchestrator.sandbox import ContainerResult
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, make_repo

EXPERIMENTS = 1000
REAL_SCORE = "echo score: -$(sed -n 's/^OFFSET = //p' impl.py)"
REFRESH_S = 15.0
"""How often the watching browser reloads the served report (the page's own period)."""


def rss_bytes() -> int:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class InstantExecutor:
    """An executor whose every attempt prints `score: 1` at once (or, `every_keep`, a better
    score each time); it notes the RSS per attempt. With `real`, the attempts go to the real
    executor (containers) instead, noted the same way."""

    assigns_gpus = False

    def __init__(self, every_keep: bool = False, real: Any = None) -> None:
        self.rss: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.every_keep, self.real = every_keep, real

    def run(self, attempt: Attempt) -> ContainerResult:
        self.rss[attempt.experiment] = rss_bytes()
        t = os.times()  # this process's threads and the processes it waited for (agent, git)
        self.cpu[attempt.experiment] = t.user + t.system + t.children_user + t.children_system
        if self.real is not None:
            result: ContainerResult = self.real.run(attempt)
            return result
        score = -attempt.experiment if self.every_keep else 1  # each later one better: a keep
        return ContainerResult(0, False, False, 0.01, 50 * 1024**2, 0.01, f"score: {score}\n")

    def slots(self, contract: Contract) -> int | None:
        return 1

    def check(self, contract: Contract) -> None:
        return None

    def image_id(self, image: str) -> str:
        return "sha256:bench"

    def cancel(self) -> int:
        return self.real.cancel() if self.real is not None else 0  # type: ignore[no-any-return]

    def reopen(self) -> None:
        return self.real.reopen() if self.real is not None else None  # type: ignore[no-any-return]

    def reap(self, *, everything: bool = False) -> int:
        return self.real.reap(everything=everything) if self.real is not None else 0  # type: ignore[no-any-return]

    def close(self) -> None:
        return self.real.close() if self.real is not None else None  # type: ignore[no-any-return]


def _serve(repo: Path) -> tuple[subprocess.Popen[str], str]:
    """`report --serve` on the run, in its own process as it would be; (process, its address)
    once it has written the first report."""
    cmd = [sys.executable, "-m", "orchestrator", "--repo", str(repo), "report", "scale",
           "--serve", "--port", "0"]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    url = re.search(r"http://\S+/", server.stdout.readline())
    assert url, "report --serve said no address"
    return server, url.group(0)


def _watch(url: str, stop: threading.Event, every_s: float) -> None:
    """A browser on the served report while the night runs: each reload has the server
    rewrite the report if the ledger changed."""
    while not stop.wait(every_s):
        with urllib.request.urlopen(url, timeout=60) as page:
            assert b"status-filter" in page.read()


def scale_night(
    tmp: Path, experiments: int, every_keep: bool = False, real: bool = False
) -> dict[str, float]:
    repo = make_repo(tmp / "repo", {"impl.py": IMPL})
    prompts = tmp / "prompts"
    prompts.mkdir()
    # A discard night's ideas are new comment lines; a keep night's rewrite one constant, so
    # the best's files keep their size and what grows in the prompt is the history alone.
    change = (
        "sed -i 's/^OFFSET = .*/OFFSET = '$((AUTORESEARCH_EXPERIMENT + 100))'.5/' impl.py"
        if every_keep
        else 'echo "# idea $AUTORESEARCH_EXPERIMENT" >> impl.py'
    )
    agent = (
        f'wc -c < "$AUTORESEARCH_PROMPT" > {prompts}/$AUTORESEARCH_EXPERIMENT; {change}; '
        'echo "DESCRIPTION: idea number $AUTORESEARCH_EXPERIMENT"; '
        'echo "HYPOTHESIS: a small change, measured to be sure"'
    )
    contract = build_contract(
        {"implementation": {"paths": ["impl.py"]},
         # real: each kept change is a better score, measured in a container by the shell
         "evaluator": {"command": REAL_SCORE if real else "echo score: 1", "isolation": "shared"},
         "metric": {"name": "score", "goal": "min"},
         "agent": {"kind": "command", "command": agent, "timeout_s": 600, "on_host": True},
         # every keep: each proposal from the latest best (a pipelined one would conflict)
         "budget": {"parallel": 1, "pipeline": 0 if every_keep else 1, "baseline_repeats": 1,
                    "max_experiments": experiments, "seconds": 60}},
        {}, "bench",
    )  # fmt: skip
    build = runs.build_executor
    executor = InstantExecutor(every_keep)
    if real:
        executor.real = build(contract, repo, "scale", DockerSandbox(), lambda *_a: None)
    with mock.patch.object(runs, "build_executor", lambda *_a: executor):
        night = runs.start_run(repo, "scale", contract, "bench", None, say=lambda _m: None,
                               backoff=Backoff(1, 5))  # fmt: skip
    server, url = _serve(repo)
    stop = threading.Event()
    browser = threading.Thread(target=_watch, args=(url, stop, REFRESH_S), daemon=True)
    browser.start()
    t0 = time.perf_counter()
    try:
        night.execute()
    finally:
        stop.set()
        browser.join()
        server.kill()
        server.wait()
    wall = time.perf_counter() - t0
    exps = [e for e in night.ledger.experiments() if e.id > 0]
    assert len(exps) == experiments, len(exps)
    keeps = sum(1 for e in exps if e.status == "keep")
    assert not every_keep or keeps == experiments, (keeps, experiments)
    ends = sorted(e.finished for e in exps if e.finished is not None)
    cycles = [b - a for a, b in itertools.pairwise(ends)]
    window = min(100, len(cycles) // 3)
    first, last = statistics.median(cycles[:window]), statistics.median(cycles[-window:])
    cpu = [executor.cpu[i + 1] - executor.cpu[i] for i in range(1, experiments)]
    cpu_first, cpu_last = statistics.median(cpu[:window]), statistics.median(cpu[-window:])
    early = min(50, experiments // 2)
    grown = rss_bytes() - executor.rss.get(early, rss_bytes())
    prompt_early = int((prompts / str(early)).read_text())
    prompt_late = int((prompts / str(experiments)).read_text())
    return {"wall": wall, "first": first, "last": last, "rss": grown, "early": early,
            "p_early": prompt_early, "p_late": prompt_late, "cpu_first": cpu_first,
            "cpu_last": cpu_last, "keeps": keeps}  # fmt: skip


def section(experiments: int = EXPERIMENTS) -> None:
    print(f"\nscale: a {experiments}-experiment night, the command agent, a no-op evaluator "
          "(an in-process instant executor: the orchestrator's own cost; and every one a keep "
          "on the real engine, each in a container)")  # fmt: skip
    n = experiments
    print(
        "| measure | every one a discard | every one a keep | every one a keep, real engine | target |"
    )
    print("| --- | --- | --- | --- | --- |")
    nights = []
    for every_keep, real in ((False, False), (True, False), (True, True)):
        with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
            nights.append(scale_night(Path(tmp), experiments, every_keep, real))
    miss = nights[0]
    early = f"{miss['early']:.0f}"

    def row(what: str, cell: Callable[[dict[str, float]], str], target: str) -> None:
        print(f"| {what} | {' | '.join(cell(r) for r in nights)} | {target} |")

    row(f"orchestrator RSS growth, experiment {early} → {n}",
        lambda r: f"{r['rss'] / 1024**2:.1f} MB", "< 50 MB")  # fmt: skip
    row("median cycle time, last 100 vs first 100",
        lambda r: f"{r['last'] / r['first']:.2f}× ({r['last'] * 1000:.0f} ms vs "
                  f"{r['first'] * 1000:.0f} ms)", "≤ 1.1×")  # fmt: skip
    row("median CPU per experiment (the orchestrator's threads, its agent and git), last 100 "
        "vs first 100", lambda r: f"{r['cpu_last'] / r['cpu_first']:.2f}× "
                                  f"({r['cpu_last'] * 1000:.0f} ms vs {r['cpu_first'] * 1000:.0f} ms)",
        "≤ 1.1×")  # fmt: skip
    row(f"prompt at #{n} vs #{early}",
        lambda r: f"{r['p_late'] / r['p_early']:.2f}× ({r['p_late']:.0f} vs {r['p_early']:.0f} chars)",
        "≤ 1.5×")  # fmt: skip
    row("keeps", lambda r: f"{r['keeps']:.0f}", "—")
    row("the night took", lambda r: f"{r['wall']:.0f} s", "—")


if __name__ == "__main__":
    section(int(sys.argv[1]) if len(sys.argv) > 1 else EXPERIMENTS)
