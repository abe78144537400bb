"""`autoresearch init`: a first contract, a direction and an evaluator skeleton in one command.

What is written follows the trusted-side rule: the evaluator skeleton draws its
inputs from the harness's seed, calls the candidate through an ordinary import
(a stand-in in harness mode), checks, measures and reports itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.contract.load import build_contract
from orchestrator.errors import ContractError, UserError
from orchestrator.links import within

KINDS = ("latency", "flaky-test", "refactor", "config", "prompt", "ml")
ADVICE = {
    "latency": "Make it fast without changing what it returns. Try the algorithm first (a better "
    "bound, a sieve, a cache that stays correct), then constant factors. The evaluator checks every "
    "answer against a trusted reference on inputs drawn fresh each run: a table of answers cannot win.",
    "flaky-test": "A test fails now and then for a real reason: find the race or the hidden order and "
    "fix the cause in the implementation. Sleeping longer, retrying or weakening the test is not a fix.",
    "refactor": "Make it simpler (lower complexity, fewer lines) without changing its behaviour: the "
    "evaluator compares it with the original on many generated inputs and runs the tests.",
    "config": "Tune the settings for the measured load. Change one thing at a time and keep the "
    "constraints (tail latency, error rate) in view: a faster setting that drops requests loses.",
    "prompt": "Improve the prompt's score on the evaluation set without inflating its tokens: a "
    "constraint holds the tokens near the baseline's. Be specific; show the format you want.",
    "ml": "Get a lower validation loss in the same training time. The clock belongs to the "
    "evaluator: a faster step counts only through what the model learns. Change one idea at a time.",
}
SKELETON = '''"""Trusted evaluator for {module} (the agent cannot change this file).

It runs on the trusted side: `import {module}` reaches the candidate's worker,
only plain data crosses, and only what this file prints is a metric. Draw the
inputs from the harness's seed, check every answer against a reference you trust,
and measure here. Fill in `cases`, `reference` and `call` for your code.
"""

import statistics
import sys
import time

import autoresearch_harness as harness
import {module} as candidate  # noqa: F401 (a stand-in in harness mode)

rng = harness.rng()
cases = [rng.randrange(1000) for _ in range(20)]  # TODO: inputs like your real ones


def reference(case):
    return None  # TODO: the answer you trust for `case` (None: not checked yet)


def call(case):
    return None  # TODO: e.g. candidate.solve(case)


samples = []
for case in cases:
    t0 = time.perf_counter()
    got = call(case)
    samples.append((time.perf_counter() - t0) * 1000)
    want = reference(case)
    if want is not None and got != want:
        print(f"wrong answer for {{case!r}}")
        sys.exit(1)
print(f"{metric}: {{statistics.median(samples):.4f}}")
'''


@dataclass(frozen=True)
class Plan:
    edit: str
    metric: str
    goal: str
    kind: str
    command: str | None = None
    """The command that measures; None: the evaluator skeleton."""


def write(root: Path, plan: Plan, *, force: bool = False) -> list[Path]:
    """Write the contract, the direction and the evaluator skeleton; the paths written.

    Raises ContractError for a plan that cannot make a valid contract (one line, the fix),
    UserError when a file exists and `force` is not set, or when a symbolic link would take
    a write outside the repository.
    """
    if plan.kind not in KINDS:
        raise ContractError(f"--kind {plan.kind!r}: not one of {', '.join(KINDS)}")
    if not (root / plan.edit).is_file():
        raise ContractError(
            f"--edit {plan.edit}: no such file under {root} — name the file to improve"
        )
    folder = within(root, root / "autoresearch", "autoresearch init")
    files = {
        root / "autoresearch.toml": _contract(plan),
        folder / "direction.md": _direction(plan),
        folder / "evaluate.py": SKELETON.format(module=Path(plan.edit).stem, metric=plan.metric),
    }
    for path in files:  # a link (dangling too) would take the write out of the repository
        within(root, path, "autoresearch init")
    clash = [p for p in files if p.exists()]
    if clash and not force:
        raise UserError(f"{clash[0]} exists — move it away or pass --force to overwrite")
    data = _contract_data(plan)
    build_contract(data, {}, "autoresearch init")  # what is written validates
    folder.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def _contract_data(plan: Plan) -> dict[str, object]:
    edit_dir = str(Path(plan.edit).parent)
    # the evaluator imports the edited module by its name: its folder goes on the path
    command = plan.command or f"PYTHONPATH={edit_dir} python autoresearch/evaluate.py"
    return {
        "direction": "autoresearch/direction.md",
        "implementation": {"paths": [plan.edit]},
        "evaluator": {"command": command, "paths": ["autoresearch/evaluate.py"]},
        "metric": {"name": plan.metric, "goal": plan.goal},
        "budget": {"seconds": 300, "max_hours": 8},
    }


def _contract(plan: Plan) -> str:
    d = _contract_data(plan)
    ev, impl = d["evaluator"], d["implementation"]
    assert isinstance(ev, dict) and isinstance(impl, dict)
    return f"""# Written by `autoresearch init`; see the README's "The contract" for every key.
direction = "autoresearch/direction.md"

[implementation]
paths = [{json.dumps(plan.edit)}]          # the only files the agent may change

[evaluator]
paths = ["autoresearch/evaluate.py"]   # trusted, read-only in the sandbox
command = {json.dumps(ev["command"])}
isolation = "harness"           # the candidate cannot reach the evaluator (the default)

[metric]
name = {json.dumps(plan.metric)}
goal = "{plan.goal}"            # {"lower" if plan.goal == "min" else "higher"} is better
min_improvement = 0.0           # raise it to the smallest gain that matters

[budget]
seconds = 300                   # per experiment, hard
max_hours = 8

[agent]
kind = "auto"                   # Claude with ANTHROPIC_API_KEY, else the tuner (declare a space)
"""


def _direction(plan: Plan) -> str:
    better = "Lower" if plan.goal == "min" else "Higher"
    return (
        f"# Direction: improve `{plan.edit}`\n\n**Goal.** {better} `{plan.metric}`.\n\n"
        f"**How.** {ADVICE[plan.kind]}\n\n"
        "**Constraints.** Keep its interface; the standard library and what the sandbox image "
        "holds (add dependencies with `sandbox.requirements`).\n\n"
        "**What counts as simpler.** An equal result with fewer lines wins.\n"
    )
