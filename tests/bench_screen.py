"""`make bench`, the screening stage: sandbox seconds per kept improvement, with and without.

A synthetic night of 10 replayed ideas, 8 of them worse (80%): the evaluator
"trains" for TRAIN_SECONDS (8 s in full, 0.4 s on the screen) and scores a
constant of the implementation. Sandbox seconds = every candidate run's wall
time, screen runs included. Both nights must keep the same ideas.

    python -m tests.bench_screen
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from orchestrator.contract.load import build_contract
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests.conftest import IMPL, make_patch, make_repo

BENCH = """import os, time
from impl import score
time.sleep(float(os.environ["TRAIN_SECONDS"]))
print(f"score: {score():.6f}")
"""
IDEAS = [("10.0", "12.0"), ("10.0", "13.0"), ("10.0", "8.0"), ("8.0", "9.0"), ("8.0", "11.0"),
         ("8.0", "10.5"), ("8.0", "6.0"), ("6.0", "7.0"), ("6.0", "9.0"), ("6.0", "6.5")]  # fmt: skip
"""(the best it is written against, its value): keeps at 3 and 7, the rest worse."""


def night(tmp: Path, tag: str, screen: bool) -> tuple[float, list[str]]:
    """(sandbox seconds per kept improvement, the kept ideas)."""
    repo = make_repo(tmp / tag, {"impl.py": IMPL, "bench.py": BENCH})
    patches = tmp / f"{tag}-patches"
    for i, (old, new) in enumerate(IDEAS, 1):
        make_patch(patches, f"{i:02d}-{new}.patch", "impl.py", IMPL.replace("10.0", old),
                   IMPL.replace("10.0", new))  # fmt: skip
    data: dict[str, object] = {
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min", "min_improvement": 0.5},
        "agent": {"kind": "replay", "patches": str(patches)},
        "budget": {"baseline_repeats": 1, "seconds": 60},
        "sandbox": {"env": {"TRAIN_SECONDS": "8"}},
    }
    if screen:
        data["screen"] = {"env": {"TRAIN_SECONDS": "0.4"}, "margin": 0.0}
    contract = build_contract(data, {}, "bench")
    run = start_run(repo, tag, contract, "bench", DockerSandbox(), say=lambda _m: None,
                    backoff=Backoff(1, 5))  # fmt: skip
    run.execute()
    exps = [e for e in run.ledger.experiments() if e.id > 0]
    seconds = sum((e.wall_s or 0.0) + e.metrics.get("screen.wall_s", 0.0) for e in exps)
    kept = [e.description for e in exps if e.status == "keep"]
    return seconds / max(1, len(kept)), kept


def section() -> None:
    print("\nscreening: 10 ideas, 80% worse; full run 8 s of training, the screen 0.4 s")
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        plain, kept_plain = night(Path(tmp), "plain", screen=False)
        screened, kept_screened = night(Path(tmp), "screened", screen=True)
    same = (
        "the same keeps"
        if kept_plain == kept_screened
        else f"KEEPS DIFFER: {kept_plain} vs {kept_screened}"
    )
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| sandbox seconds per kept improvement, without vs with the screen ({plain:.1f} s vs "
          f"{screened:.1f} s; {same}) | {plain / screened:.2f}× lower | ≥ 2× |")  # fmt: skip


if __name__ == "__main__":
    section()
