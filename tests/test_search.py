"""Tree search over many parents: a night that must pass through a worse commit to reach a
better one. Greedy climbs to the local optimum and stays; tree search starts proposals from
measured nodes that are not the best (UCB), passes the valley, and merges the new best."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import git, make_repo

LANDSCAPE = [10, 8, 6, 5, 7, 9, 4, 2, 0]
"""Score by X: a local optimum at X = 3 (5), a valley at 4-5, the best at X = 8 (0)."""
BENCH = f"from impl import X\nF = {LANDSCAPE}\nprint('score:', F[min(X, len(F) - 1)])\n"
STEP = "x=$(sed -n 's/^X = //p' impl.py); sed -i \"s/^X = .*/X = $((x + 1))/\" impl.py"
"""The agent: one step on from whatever commit it was given."""


def _night(tmp: Path, kind: str, sandbox):  # type: ignore[no-untyped-def]
    repo = make_repo(tmp / kind, {"impl.py": "X = 0\n", "bench.py": BENCH})
    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min"},
        "budget": {"seconds": 30, "max_experiments": 12, "parallel": 1, "pipeline": 0},
        "agent": {"kind": "command", "command": STEP, "on_host": True},
        "search": {"kind": kind},
    }, {}, "test")  # fmt: skip
    run = start_run(repo, kind, contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    return repo, run


@pytest.mark.parametrize("kind", ["greedy", "tree"])
def test_only_the_tree_passes_the_valley(kind: str, tmp_path: Path, sandbox) -> None:
    repo, run = _night(tmp_path, kind, sandbox)
    exps = run.ledger.experiments()
    best = min(e.metric for e in exps if e.status == "keep" and e.metric is not None)
    head = git(repo, "show", f"autoresearch/{kind}:impl.py")
    status = subprocess.run([sys.executable, "-m", "orchestrator", "--repo", str(repo), "status", kind],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    if kind == "greedy":
        assert best == 5 and head == "X = 3\n"  # stuck on the local optimum
        assert "search tree" not in status  # a chain: nothing to draw
        return
    assert best == 0 and head == "X = 8\n"  # the exact tree of the new best, on the branch
    discarded = {e.commit_sha: e.id for e in exps if e.status == "discard"}
    on_worse = [e for e in exps if e.parent in discarded]
    assert on_worse  # built on a worse commit to get there
    log = subprocess.run([sys.executable, "-m", "orchestrator", "--repo", str(repo), "log", kind],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    block = log.split("\n\n")[on_worse[0].id]
    assert f"from:       #{discarded[on_worse[0].parent]}" in block  # log draws the tree
    # status and the report draw it: the node built on a worse commit sits under that commit
    child, parent = on_worse[0].id, discarded[on_worse[0].parent]
    drawn = status.split("search tree")[1].splitlines()
    row = {int(line.split("#")[1].split()[0]): line for line in drawn if "#" in line}
    assert row[child].index("#") > row[parent].index("#"), drawn  # indented under its parent
    assert drawn.index(row[parent]) < drawn.index(row[child])
    best_id = min((e for e in exps if e.holds_best), key=lambda e: e.metric or 0).id
    assert f"#{best_id} keep 0 *  " in row[best_id], row[best_id]
    from orchestrator.morning.report import write_report

    page = write_report(run.ledger, run.ws, run.contract).read_text()
    assert "<h2>The search tree</h2>" in page and f"#{child} " in page.split("The search tree")[1]
