"""`make bench`: orchestration overhead per experiment vs a bare `docker run`.

Both are measured in the same run (the machine is noisy; ratios travel, absolute
seconds do not). A no-op evaluator isolates what the orchestrator adds: export the
tree, freeze the commit, create/start/wait/remove a hardened container, parse,
decide, write the ledger and results.tsv.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.contract import DEFAULT_IMAGE, build_contract
from orchestrator.loop import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, git, make_patch

EXPERIMENTS = 20
COMMAND = "echo score: 1"


def bare_runs(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", DEFAULT_IMAGE, "sh", "-c", COMMAND],
                       check=True, capture_output=True)  # fmt: skip
        out.append(time.perf_counter() - t0)
    return out


def orchestrated_runs(tmp: Path, n: int) -> list[float]:
    repo = tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "impl.py").write_text(IMPL)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "init")
    patches = tmp / "patches"
    for i in range(n):
        make_patch(patches, f"{i:03d}.patch", "impl.py", IMPL, IMPL.replace("10.0", f"{i}.5"))
    contract = build_contract(
        {
            "implementation": {"paths": ["impl.py"]},
            "evaluator": {"command": COMMAND},
            "metric": {"name": "score", "goal": "min"},
            "agent": {"kind": "replay", "patches": str(patches)},
        },
        {},
        "bench",
    )
    run = start_run(
        repo,
        "bench",
        contract,
        "bench",
        DockerSandbox(),
        say=lambda _m: None,
        backoff=Backoff(1, 5),
    )
    run.execute()
    exps = [e for e in run.ledger.experiments() if e.id > 0]
    assert len(exps) == n and all(e.status == "discard" for e in exps), [e.status for e in exps]
    return [e.finished - e.started for e in exps if e.finished is not None]


def main() -> int:
    bare_runs(2)  # warm the engine and the page cache
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        bare = bare_runs(EXPERIMENTS // 2)
        ours = orchestrated_runs(Path(tmp), EXPERIMENTS)
        bare += bare_runs(EXPERIMENTS // 2)
    b, o = statistics.median(bare), statistics.median(ours)
    ratio = o / b
    print(
        f"\norchestration overhead, no-op evaluator, {EXPERIMENTS} experiments each (medians, same run)"
    )
    print("| measure | median s | ratio |")
    print("| --- | --- | --- |")
    print(f"| bare `docker run --rm --network none` | {b:.3f} | 1.00 |")
    print(
        f"| one full experiment (propose → freeze → sandbox → decide → record) | {o:.3f} | {ratio:.2f} |"
    )
    print(f"target ≤ 1.20: {'met' if ratio <= 1.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
