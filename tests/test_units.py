"""Pure parts: contract validation, metric parsing, the decision, path globs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.contract.load import build_contract, read_contract_file
from orchestrator.contract.metrics import parse_metrics
from orchestrator.contract.model import parse_size
from orchestrator.contract.paths import matches
from orchestrator.errors import ContractError
from orchestrator.night.decision import Best, Outcome, decide

BASE = {
    "implementation": {"paths": ["impl.py"]},
    "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
    "metric": {"name": "score", "goal": "min"},
}


def test_defaults_are_the_patterns_five_minutes_and_no_network() -> None:
    c = build_contract(BASE, {}, "c.toml")
    assert c.budget.seconds == 300
    assert c.sandbox.network == "none"
    assert c.sandbox.memory == 2 * 1024**3


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({**BASE, "colour": "red"}, "c.toml: colour: Extra inputs are not permitted — remove it"),
        ({**BASE, "metric": {"name": "score", "goal": "down"}}, "c.toml: metric.goal:"),
        ({**BASE, "implementation": {"paths": ["../x.py"]}}, "implementation.paths.0:"),
        ({**BASE, "implementation": {"paths": ["/etc/passwd"]}}, "relative to the repository root"),
        ({**BASE, "sandbox": {"memory": "lots"}}, "sandbox.memory: 'lots' is not a size"),
        ({**BASE, "sandbox": {"network": "bridge"}}, "sandbox.network:"),
        ({**BASE, "sandbox": {"user": "0:0"}}, "sandbox.user:"),
        ({**BASE, "implementation": {"paths": ["bench.py"]}}, "evaluator must be fixed"),
        (
            {**BASE, "evaluator": {"command": "timeout 60 python -u ./impl.py --epochs 1"}},
            "evaluator.command runs the implementation file 'impl.py'",
        ),
        ({**BASE, "evaluator": {"command": "cd . && python -m impl"}}, "harness.run([...])"),
        (
            {**BASE, "evaluator": {"command": "sh -c 'OMP=1 python3 impl.py'"}},
            'isolation = "shared"',
        ),
        (
            {k: v for k, v in BASE.items() if k != "metric"},
            "c.toml: metric: Field required — add it",
        ),
    ],
)
def test_a_bad_contract_is_one_line_naming_file_and_key(
    data: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ContractError) as e:
        build_contract(data, {}, "c.toml")
    assert fragment in e.value.message
    assert "\n" not in e.value.message


@pytest.mark.parametrize(
    "command",
    [
        "python bench.py",
        "python -m autoresearch_harness.suite -q",
        "pytest",
        "python -c 'import impl'",
    ],
)
def test_a_harness_command_that_imports_the_implementation_loads(command: str) -> None:
    build_contract({**BASE, "evaluator": {"command": command}}, {}, "c.toml")


def test_a_shared_run_stage_may_run_the_implementation() -> None:
    shared = {"command": "python impl.py", "isolation": "shared"}
    assert build_contract({**BASE, "evaluator": shared}, {}, "c.toml").forgeable


def test_flags_override_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[implementation]\npaths=["impl.py"]\n[evaluator]\ncommand="x"\n[metric]\nname="s"\ngoal="min"\n[budget]\nseconds=10\n'
    )
    c = build_contract(read_contract_file(f), {"budget.seconds": 60, "metric.goal": None}, str(f))
    assert c.budget.seconds == 60 and c.metric.goal == "min"


def test_broken_toml_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[metric\n")
    with pytest.raises(ContractError, match=r"c.toml: not valid TOML"):
        read_contract_file(f)


def test_sizes() -> None:
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size(4096) == 4096


def test_metric_lines_both_forms_last_wins() -> None:
    text = "val_bpb:          0.997900\nnoise: not a number\nMETRIC p95_ms=12.5\nval_bpb: 0.9\nstep 3: 4 5\n"
    assert parse_metrics(text) == {"val_bpb": 0.9, "p95_ms": 12.5}


def test_globs() -> None:
    assert matches("src/a.py", "src/*.py") and not matches("src/x/a.py", "src/*.py")
    assert matches("src/x/a.py", "src/**/*.py") and matches("src/a.py", "src/**/*.py")
    assert matches("pkg/mod/a.py", "pkg") and not matches("pkg2/a.py", "pkg")


def _ok(value: float, loc: int = 10) -> Outcome:
    return Outcome(
        exit_code=0, timed_out=False, oom_killed=False, metrics={"score": value}, loc=loc
    )


METRIC = build_contract(BASE, {"metric.min_improvement": 0.1}, "c").metric


def test_decision_keep_discard_crash() -> None:
    best = Best(5.0, 10)
    assert decide(_ok(4.0), best, METRIC).status == "keep"
    assert decide(_ok(6.0), best, METRIC).status == "discard"
    assert decide(_ok(4.95), best, METRIC).status == "discard"  # within min_improvement
    assert decide(_ok(4.95, loc=8), best, METRIC).reason.startswith(
        "equal within"
    )  # simplicity rule
    assert decide(_ok(5.05, loc=8), best, METRIC).status == "keep"
    assert decide(_ok(5.2, loc=8), best, METRIC).status == "discard"  # simpler but clearly worse


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (Outcome(1, False, False, {"score": 1.0}), "exit code 1"),
        (Outcome(137, True, False, {}, budget_s=5), "timeout"),
        (Outcome(137, False, True, {}), "out of memory"),
        (Outcome(0, False, False, {"other": 1.0}), "no 'score' metric"),
        (Outcome(0, False, False, {"score": float("nan")}), "is nan"),
    ],
)
def test_decision_crashes(outcome: Outcome, reason: str) -> None:
    d = decide(outcome, Best(5.0, 10), METRIC)
    assert d.status == "crash" and reason in d.reason


def test_baseline_is_kept_unless_it_crashes() -> None:
    assert decide(_ok(9.0), None, METRIC).status == "keep"
    assert decide(Outcome(2, False, False, {}), None, METRIC).status == "crash"


def test_history_shows_agents_delta_cost_and_hypothesis() -> None:
    from orchestrator.agents.context import render_history
    from orchestrator.experiment import Experiment

    def exp(i: int, metric: float, hypothesis: str = "", cost: float | None = None) -> Experiment:
        return Experiment(i, "done", "p", "c", f"change {i}", hypothesis, "keep", "why", metric, {}, 0, False, False,
                          1.0, 1.0, 1, 0, False, None, 5, cost, {}, [], True, None, 0, 0.0, 0.0)  # fmt: skip

    shown = render_history([exp(0, 10.0), exp(1, 8.0, "smaller is better", 0.0123)], {})
    assert "#1 keep: 8 (Δ -2) — change 1 (why, $0.0123) — hypothesis: smaller is better" in shown


def test_the_orchestrators_own_figures_are_metrics_no_evaluator_can_print() -> None:
    from orchestrator.contract.metrics import measured
    from orchestrator.sandbox import ContainerResult

    r = ContainerResult(exit_code=0, timed_out=False, oom_killed=False, wall_s=2.5,
                        peak_memory_bytes=64 * 1024**2, cpu_s=1.25,
                        output="score: 3\nsandbox.cpu_s: 0.0001\nMETRIC sandbox.wall_s=0\n")  # fmt: skip
    assert measured(r) == {
        "score": 3.0, "sandbox.wall_s": 2.5, "sandbox.cpu_s": 1.25, "sandbox.peak_memory_mb": 64.0
    }  # fmt: skip
    assert "sandbox.cpu_s" not in measured(replace(r, cpu_s=None))


def test_a_new_module_named_like_the_standard_librarys_is_flagged(tmp_path: Path) -> None:
    from orchestrator.night.tampering import screen
    from tests.conftest import contract_for

    contract = contract_for(tmp_path)
    new = "--- /dev/null\n+++ b/pkg/{}\n@@ -0,0 +1 @@\n+x = 1\n"
    edited = "--- a/pkg/{0}\n+++ b/pkg/{0}\n@@ -1 +1 @@\n-x = 0\n+x = 1\n"
    for path in ("statistics.py", "json/__init__.py"):
        assert any("standard library" in f for f in screen(new.format(path), contract)), path
    for diff in (new.format("helpers.py"), edited.format("types.py"), new.format("statistics.txt")):
        assert screen(diff, contract) == [], diff


def test_the_files_a_candidate_added_are_named_against_its_parent(tmp_path: Path) -> None:
    from orchestrator.contract.model import Implementation
    from orchestrator.workspace import Workspace
    from tests.conftest import git, make_repo

    repo = make_repo(tmp_path / "r", {"pkg/a.py": "A = 1\n", "bench.py": "x\n"})
    parent = git(repo, "rev-parse", "HEAD").strip()
    (repo / "pkg" / "pytest.py").write_text("def main(*a):\n    return 0\n")
    (repo / "notes.txt").write_text("outside the implementation\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "plant")
    child = git(repo, "rev-parse", "HEAD").strip()
    ws = Workspace(repo, "t", Implementation(paths=["pkg/**"]))
    assert ws.added(parent, child) == ("pkg/pytest.py",)
    assert ws.added(child, child) == () and ws.added(child, parent) == ()


def test_only_top_level_modules_named_like_the_standard_librarys_are_named() -> None:
    from orchestrator.executors.isolation import stdlib_named

    named = stdlib_named(["queue.py", "random/__init__.py", "pkg/queue.py", "src/random/__init__.py",
                          "impl.py", "notes.txt", "random/helpers.py"])  # fmt: skip
    assert [line.split(" is named")[0] for line in named] == ["queue.py", "random/__init__.py"]
    assert "`import queue` fails on the trusted side" in named[0]


def test_the_best_is_the_keep_merged_last_not_the_highest_id() -> None:
    """With several slots, winners merge out of their ids' order: #3 (0.02) merged after #5
    (0.86). The best is #3's — what a stale winner at 0.34 must beat, what `accept` takes, what
    the report shows — never #5's."""
    from dataclasses import replace as copy

    from orchestrator.experiment import Experiment, best_holder
    from orchestrator.night.stops import best_so_far

    base = Experiment(0, "done", "p", "c", "x", "", "keep", "why", 18.0, {}, 0, False, False,
                      1.0, 1.0, 1, 0, False, None, 5, None, {}, [], False, None, 0, 0.0, 1.0)  # fmt: skip
    merged = [(4, 1.01, 2.0), (5, 0.86, 3.0), (3, 0.02, 4.0)]  # (id, metric, merged at)
    exps = [base] + [copy(base, id=i, metric=m, merged=True, merged_sha=f"sha{i}", finished=t)
                     for i, m, t in merged]  # fmt: skip
    exps.sort(key=lambda e: e.id)
    holder = best_holder(exps)
    assert holder is not None and holder.id == 3 and holder.merged_sha == "sha3"
    assert best_so_far(exps)[-1] == 0.02


def test_one_retry_policy_doubles_to_its_cap_tells_each_pause_and_stops_when_cancelled() -> None:
    import threading

    from orchestrator.errors import Cancelled, InfraError
    from orchestrator.night import Backoff

    pauses: list[float] = []
    tries = iter([InfraError("down"), InfraError("down"), InfraError("down"), "up"])

    def attempt() -> str:
        got = next(tries)
        if isinstance(got, Exception):
            raise got
        return got

    def infra(e: Exception) -> bool:
        return isinstance(e, InfraError)

    backoff = Backoff(0.01, 0.03)
    assert backoff.retry(attempt, retryable=infra, failed=lambda _e, p: pauses.append(p)) == "up"
    assert pauses == [0.01, 0.02, 0.03]
    with pytest.raises(ValueError):  # not retryable: at once, untold
        backoff.retry(lambda: int("x"), retryable=infra, failed=lambda _e, p: pauses.append(p))
    assert len(pauses) == 3
    stop = threading.Event()

    def fail_then_cancel() -> str:
        stop.set()  # the teardown comes while the try runs
        raise InfraError("down")

    with pytest.raises(Cancelled, match="torn down") as caught:
        backoff.retry(fail_then_cancel, retryable=infra, failed=lambda _e, p: pauses.append(p),
                      cancelled=stop, what="torn down")  # fmt: skip
    assert isinstance(caught.value.__cause__, InfraError) and len(pauses) == 3
    with pytest.raises(Cancelled):  # cancelled before: never tried
        backoff.retry(lambda: pytest.fail("tried"), retryable=infra, failed=lambda _e, _p: None,
                      cancelled=stop)  # fmt: skip
