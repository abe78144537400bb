"""A portfolio of agents: proposals go to the member that yields, by a bandit rule; each
experiment records its member; status and the report show each one's share and yield."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import make_repo

BENCH = "from impl import X\nprint('score:', 100 - X)\n"
GOOD = "x=$(sed -n 's/^X = //p' impl.py); sed -i \"s/^X = .*/X = $((x + 1))/\" impl.py"
USELESS = 'echo "# a comment $AUTORESEARCH_EXPERIMENT" >> impl.py'
PROPOSALS = 20


def test_the_member_that_yields_gets_most_of_the_proposals(tmp_path: Path, sandbox) -> None:
    repo = make_repo(tmp_path / "p", {"impl.py": "X = 0\n", "bench.py": BENCH})
    members = [{"kind": "command", "command": USELESS, "on_host": True},
               {"kind": "command", "command": GOOD, "on_host": True}]  # fmt: skip
    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min"},
        "budget": {"seconds": 30, "max_experiments": PROPOSALS, "parallel": 1, "pipeline": 0},
        "agent": {"kind": "portfolio", "members": members},
    }, {}, "test")  # fmt: skip
    run = start_run(repo, "pf", contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    by = [e.agent for e in run.ledger.experiments() if e.id > 0]
    assert len(by) == PROPOSALS and set(by) == {"1-command", "2-command"}
    assert by.count("2-command") >= 14, by  # the useful one, most of the first 20
    cli = [sys.executable, "-m", "orchestrator", "--repo", str(repo)]
    status = subprocess.run([*cli, "status", "pf"], capture_output=True, text=True, check=True)
    useful = next(ln for ln in status.stdout.splitlines() if ln.startswith("agent 2-command:"))
    assert f"{by.count('2-command')} proposals" in useful and "0 kept" not in useful
    data = json.loads(
        subprocess.run(
            [*cli, "report", "pf", "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    shares = {m["member"]: m["share"] for m in data["agents"]}
    assert shares["2-command"] > 0.7 > shares["1-command"]
