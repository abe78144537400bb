"""The offline tuner: AST rewrites that keep formatting, and real Optuna studies end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.agents.tuner import read_constant, write_constant
from tests.conftest import git

SOURCE = '''"""Two knobs."""
import math

X: float = 0.0  # the first knob (keep this comment)
Y = 5   # second
Z = "keep"


def score():
    return (X - 3.0) ** 2 + (Y - 2) ** 2 + math.sin(0)
'''
BENCH = "from impl import score\nprint(f'score: {score():.6f}')\n"


def test_constants_are_rewritten_in_place() -> None:
    out = write_constant(write_constant(SOURCE, "X", 2.718281828), "Y", 3)
    assert read_constant(out, "X") == 2.71828 and read_constant(out, "Y") == 3
    assert out == SOURCE.replace("X: float = 0.0", "X: float = 2.71828").replace("Y = 5", "Y = 3")
    assert "# the first knob (keep this comment)" in out and "Y = 3   # second" in out
    with pytest.raises(KeyError):
        write_constant(SOURCE, "W", 1)


@pytest.fixture
def knobs(tmp_path: Path) -> Path:
    from tests.conftest import make_repo

    return make_repo(tmp_path / "knobs", {"impl.py": SOURCE, "bench.py": BENCH})


def _run(knobs: Path, sandbox, tag: str, n: int, **agent: object):  # type: ignore[no-untyped-def]
    from orchestrator.contract.load import build_contract
    from orchestrator.night import Backoff
    from orchestrator.runs import start_run

    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min"},
        # one trial at a time, so each is told before the next is asked (the counts below)
        "budget": {"seconds": 30, "max_experiments": n, "parallel": 1, "pipeline": 0},
        "agent": {"kind": "tuner", "space": {
            "X": {"type": "float", "low": -5, "high": 5}, "Y": {"type": "int", "low": 0, "high": 10}}, **agent},
    }, {}, "test")  # fmt: skip
    run = start_run(
        knobs, tag, contract, "test", sandbox, say=lambda _m: None, backoff=Backoff(0.1, 0.5)
    )
    run.execute()
    return run


def test_the_tuner_beats_the_baseline_within_ten_experiments(knobs: Path, sandbox) -> None:
    run = _run(knobs, sandbox, "tune", 10)
    exps = run.ledger.experiments()
    baseline = exps[0].metric
    assert baseline == 18.0  # (0-3)^2 + (5-2)^2
    best = min(e.metric for e in exps if e.status == "keep")
    assert best < baseline
    import optuna

    study = optuna.load_study(
        study_name="autoresearch", storage=f"sqlite:///{run.run_dir / 'tuner.sqlite'}"
    )
    told = [t for t in study.trials if t.state.is_finished()]
    assert (
        len(told) == 10
    )  # the baseline and 9 of 10 experiments (the last is told when the next is asked)
    assert "X=" in exps[1].description and "trial #1" in exps[1].hypothesis
    shown = git(knobs, "show", "autoresearch/tune:impl.py")
    assert "# the first knob (keep this comment)" in shown and "def score():" in shown


def test_one_value_at_a_time(knobs: Path, sandbox) -> None:
    run = _run(knobs, sandbox, "one", 4, one_at_a_time=True, sampler="random")
    for e in run.ledger.experiments()[1:]:
        if e.status == "refused":
            continue
        diff = (run.ledger.exp_dir(e.id) / "diff.patch").read_text()
        changed = [
            ln for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")
        ]
        assert len(changed) == 1, diff


def test_auto_picks_claude_with_a_key_else_the_tuner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from orchestrator.agents.anthropic import AnthropicAgent
    from orchestrator.agents.tuner import Tuner
    from orchestrator.runs import build_agent
    from tests.conftest import contract_for

    space = {"OFFSET": {"type": "float", "low": 0, "high": 20}}
    contract = contract_for(tmp_path, agent={"kind": "auto", "tuner": {"space": space}})
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert isinstance(build_agent(contract, tmp_path / "run"), Tuner)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    assert isinstance(build_agent(contract, tmp_path / "run"), AnthropicAgent)


def test_in_parallel_a_winner_whose_lines_conflict_is_reapplied_on_the_new_best(
    knobs: Path, sandbox
) -> None:
    """Four slots: every proposal rewrites the same two lines, so each win that lands while
    others ran makes theirs conflict. The tuner's change is an assignment: it is made again on
    the new best and confirmed there, never discarded as a conflict."""
    from orchestrator.contract.load import build_contract
    from orchestrator.night import Backoff
    from orchestrator.runs import start_run

    slow_when_good = (
        "import time\nfrom impl import score\ntime.sleep(max(0.0, 2 * (2 - score())))\n"
    )
    (knobs / "bench.py").write_text(slow_when_good + BENCH)  # a better one lands later: stale
    git(knobs, "commit", "-qam", "better candidates take longer")
    contract = build_contract({
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min"},
        "budget": {"seconds": 30, "max_experiments": 8, "parallel": 4, "pipeline": 0},
        "agent": {"kind": "tuner", "sampler": "random", "space": {  # every value beats 18
            "X": {"type": "float", "low": 2, "high": 4}, "Y": {"type": "int", "low": 1, "high": 3}}},
    }, {}, "test")  # fmt: skip
    run = start_run(knobs, "par", contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    exps = run.ledger.experiments()[1:]
    assert not [e.reason for e in exps if "conflicts" in (e.reason or "")]
    again = [e for e in exps if (run.ledger.exp_dir(e.id) / "diff.rebased.1.patch").exists()]
    assert again, [(e.id, e.status, e.reason) for e in exps]  # stale winners were made again
    for e in again:
        assert e.status in ("keep", "discard") and e.metric is not None  # confirmed on the new best
    best = min(e.metric for e in exps if e.status == "keep" and e.merged)
    shown = git(knobs, "show", "autoresearch/par:impl.py")
    from orchestrator.agents.tuner import read_constant

    x, y = read_constant(shown, "X"), read_constant(shown, "Y")
    assert (x - 3.0) ** 2 + (y - 2) ** 2 == pytest.approx(best, abs=1e-4)  # the branch is the best
