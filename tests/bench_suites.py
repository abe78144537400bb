"""`make bench`: real projects' own test suites through the harness, against the same suites run
directly, on the same commit in the same sandbox image.

Each project's source distribution comes from the package index (its tests ship in it), is
committed as a repository, and runs as a baseline: with `evaluator.isolation = "harness"`
(the tests trusted, the library the candidate's, in its worker) and with `"shared"` (pytest and
the library in one process: the direct run). Both go through `python -m autoresearch_harness.suite
-rA`, so each test's outcome is in the log: the share of tests with the same outcome, and the
suites' own wall times (`tests_s`), are compared. Each pair runs at the default `sandbox.cpus = 1`
(a harness run on one core leased to it: its two processes, the tests' and the candidate's,
answer each other there) and again at 2 (they float over the machine's cores).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import make_repo

_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+?)(?: - .*)?$", re.M)


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    implementation: str
    tests: list[str]
    pythonpath: str = ""
    ignore_addopts: bool = False
    deselect: list[str] = field(default_factory=list)
    """Tests left out of both runs, and why (said in the table)."""
    why: str = ""


SUITES = [
    Suite("more-itertools", "11.2.1", "more_itertools/**", ["tests"],
          deselect=["tests/test_more.py::TestSerialize::test_concurrent_calls",
                    "tests/test_more.py::TestConcurrentTee::test_concurrent_consumers"],
          why="2 thread-stress tests left out of both runs (10-100 threads passing 10⁵-10⁶ values)"),
    Suite("semver", "3.2.0", "src/semver/**", ["tests"], pythonpath="src", ignore_addopts=True),
    Suite("inflection", "0.5.1", "inflection/**", ["test_inflection.py"]),
    Suite("boltons", "26.2.0", "boltons/**", ["tests"]),
    Suite("cachetools", "8.0.3", "src/cachetools/**", ["tests"], pythonpath="src"),
]  # fmt: skip


def fetch(suite: Suite, where: Path) -> Path:
    """The project's source distribution, unpacked and committed as a repository."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    f"{suite.name}=={suite.version}", "-d", str(where / "dist")], check=True)  # fmt: skip
    archive = next((where / "dist").glob("*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(where / "src", filter="data")
    root = next((where / "src").iterdir())
    make_repo(root, {})
    return root


def baseline(
    repo: Path, suite: Suite, isolation: str, cpus: float = 1.0
) -> tuple[dict[str, str], float, float]:
    """(each test's outcome, the suite's own seconds, the whole run's seconds) of one baseline."""
    args = ["-rA", *(["--ignore-addopts"] if suite.ignore_addopts else []),
            *[f"--deselect={d}" for d in suite.deselect], *suite.tests]  # fmt: skip
    env = f"PYTHONPATH={suite.pythonpath} " if suite.pythonpath else ""
    contract = build_contract(
        {"implementation": {"paths": [suite.implementation]},
         "evaluator": {"command": f"{env}python -m autoresearch_harness.suite {' '.join(args)}",
                       "paths": suite.tests,
                       "isolation": isolation},
         "metric": {"name": "tests_passed", "goal": "max"}, "agent": {"kind": "none"},
         "budget": {"baseline_repeats": 1, "seconds": 1200},
         "sandbox": {"memory": "2g", "pids": 512, "log_bytes": "8m", "cpus": cpus}},
        {}, "bench",
    )  # fmt: skip
    run = start_run(repo, f"{isolation}-{cpus:g}", contract, "bench", DockerSandbox(), say=lambda _m: None,
                    backoff=Backoff(0.5, 2))  # fmt: skip
    run.execute()
    base = run.ledger.get(0)
    assert base is not None, suite
    log = (run.ledger.exp_dir(0) / "output.log").read_text(errors="replace")
    outcomes = {test: outcome for outcome, test in _OUTCOME.findall(log)}
    return (
        outcomes,
        base.metrics.get("tests_s", float("nan")),
        base.metrics.get("sandbox.wall_s", 0.0),
    )


def section(suites: list[Suite] = SUITES) -> None:
    print(
        "\nreal projects' own test suites: through the harness vs directly (same image, same commit)"
    )
    print("| project (version) | tests | same outcome | suite time, direct → harness, 1 CPU (default) "
          "| ratio | 2 CPUs | ratio | note |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for suite in suites:
        times = []
        with tempfile.TemporaryDirectory(prefix="autoresearch-bench-suite-") as tmp:
            repo = fetch(suite, Path(tmp))
            for cpus in (1.0, 2.0):
                direct, direct_s, _ = baseline(repo, suite, "shared", cpus)
                ours, ours_s, _ = baseline(repo, suite, "harness", cpus)
                times.append(f"{direct_s:.1f} s → {ours_s:.1f} s | {ours_s / direct_s:.2f}×")
                if cpus == 1.0:
                    same = sum(1 for test, outcome in direct.items() if ours.get(test) == outcome)
                    share, count = (same / len(direct) if direct else 0.0), len(direct)
        print(f"| {suite.name} {suite.version} | {count} | {same} ({share:.1%}) | "
              f"{' | '.join(times)} | {suite.why} |")  # fmt: skip


if __name__ == "__main__":
    section([s for s in SUITES if not sys.argv[1:] or s.name in sys.argv[1:]])
