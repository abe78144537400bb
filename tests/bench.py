"""`make bench`: orchestration overhead per experiment vs a bare `docker run`.

Both are measured in the same run, interleaved: before each experiment's proposal
the agent times one bare `docker run`, so a burst of machine noise hits both sides
(ratios travel, absolute seconds do not). A no-op evaluator isolates what the orchestrator adds: export the
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

from orchestrator.agents import Context, Proposal
from orchestrator.agents.replay import ReplayAgent
from orchestrator.contract import DEFAULT_IMAGE, build_contract
from orchestrator.loop import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, make_patch, make_repo

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


class InterleavedReplay:
    """The replay agent, timing one bare `docker run` before each proposal."""

    def __init__(self, patches: Path) -> None:
        self.inner = ReplayAgent(patches)
        self.bare: dict[int, float] = {}

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        if ctx.experiment <= len(self.inner.patches):
            self.bare[ctx.experiment] = bare_runs(1)[0]
        return self.inner.propose(ctx, scratch)


def orchestrated_runs(tmp: Path, n: int) -> tuple[list[float], list[float]]:
    """(bare docker run seconds, full experiment seconds without that bare run), interleaved."""
    repo = make_repo(tmp / "repo", {"impl.py": IMPL})
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
    sandbox = DockerSandbox()
    run = start_run(
        repo, "bench", contract, "bench", sandbox, say=lambda _m: None, backoff=Backoff(1, 5)
    )
    agent = InterleavedReplay(patches)
    run.agent = agent
    run.execute()
    exps = [e for e in run.ledger.experiments() if e.id > 0]
    assert len(exps) == n and all(e.status == "discard" for e in exps), [e.status for e in exps]
    bare = [agent.bare[e.id] for e in exps]
    ours = [e.finished - e.started - agent.bare[e.id] for e in exps if e.finished is not None]
    return bare, ours


def main() -> int:
    bare_runs(2)  # warm the engine and the page cache
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        bare, ours = orchestrated_runs(Path(tmp), EXPERIMENTS)
    b, o = statistics.median(bare), statistics.median(ours)
    # Each experiment is paired with the bare run just before it: the median of those
    # ratios is robust to the machine drifting during the run.
    ratio = statistics.median(x / y for x, y in zip(ours, bare, strict=True))
    print(
        f"\norchestration overhead, no-op evaluator, {EXPERIMENTS} experiments each (medians, same run)"
    )
    print("| measure | median s | ratio |")
    print("| --- | --- | --- |")
    print(f"| bare `docker run --rm --network none` | {b:.3f} | 1.00 |")
    print(
        f"| one full experiment (propose → freeze → sandbox → decide → record) | {o:.3f} | {ratio:.2f} |"
    )
    print(f"ratio = median of {len(ours)} paired ratios (ratio of the medians: {o / b:.2f})")
    print(f"target ≤ 1.20: {'met' if ratio <= 1.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
