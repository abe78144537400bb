"""`make bench`, the tuner in parallel: wins kept per hour at 4 slots, with a winner whose lines
conflict made again on the new best (now) against discarded as a conflict (before).

Two knobs on adjacent lines, so any two proposals' edits conflict in git; each
experiment sleeps 1 s (the slots, not the cores, are the limit). The same seeded
study runs twice; "before" is the same code with the agent's `reapply` turned off.

    python -m tests.bench_tuner
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path
from unittest import mock

from orchestrator.agents.tuner import Tuner
from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import make_repo

IMPL = "X = 0.0\nY = 5\n\n\ndef score():\n    return (X - 3.0) ** 2 + (Y - 2) ** 2\n"
BENCH = "import time\nfrom impl import score\ntime.sleep(1)\nprint(f'score: {score():.6f}')\n"
EXPERIMENTS = 32


def tuner_night(tmp: Path, tag: str, reapply: bool) -> dict[str, float]:
    repo = make_repo(tmp / tag, {"impl.py": IMPL, "bench.py": BENCH})
    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min"},
        "budget": {"seconds": 30, "max_experiments": EXPERIMENTS, "parallel": 4, "baseline_repeats": 1},
        "agent": {"kind": "tuner", "seed": 7, "space": {
            "X": {"type": "float", "low": -5, "high": 5}, "Y": {"type": "int", "low": 0, "high": 10}}},
    }, {}, "bench")  # fmt: skip
    off = mock.patch.object(Tuner, "reapply", lambda *_a: False)  # the code before the change
    with off if not reapply else contextlib.nullcontext():
        run = start_run(repo, tag, contract, "bench", DockerSandbox(), say=lambda _m: None,
                        backoff=Backoff(1, 5))  # fmt: skip
        t0 = time.perf_counter()
        run.execute()
        wall = time.perf_counter() - t0
    exps = [e for e in run.ledger.experiments() if e.id > 0]
    kept = sum(1 for e in exps if e.status == "keep" and e.merged)
    conflicts = sum(1 for e in exps if "conflicts" in (e.reason or ""))
    best = min(
        e.metric for e in run.ledger.experiments() if e.status == "keep" and e.metric is not None
    )
    return {"kept": kept, "conflicts": conflicts, "wall": wall, "best": best}


def section() -> None:
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        before = tuner_night(Path(tmp), "before", reapply=False)
        after = tuner_night(Path(tmp), "after", reapply=True)
    print(f"\ntuner in parallel: 4 slots, {EXPERIMENTS} experiments of 1 s, two knobs on adjacent "
          "lines (the same seeded study twice)")  # fmt: skip
    print("| measure | before (a conflict discarded) | now (made again on the new best) |")
    print("| --- | --- | --- |")
    per_h = {k: 3600 * r["kept"] / r["wall"] for k, r in (("b", before), ("a", after))}
    print(f"| wins kept per hour | {per_h['b']:.0f} ({before['kept']:.0f} in {before['wall']:.0f} s) "
          f"| {per_h['a']:.0f} ({after['kept']:.0f} in {after['wall']:.0f} s) |")  # fmt: skip
    print(
        f"| winners discarded as a conflict | {before['conflicts']:.0f} | {after['conflicts']:.0f} |"
    )
    print(f"| best score (0 is the optimum) | {before['best']:.4f} | {after['best']:.4f} |")


if __name__ == "__main__":
    section()
