"""A real project's own test suite as the judge, in the real sandbox: inflection's 455 tests
(vendored in examples/test-suite, unchanged) through the harness give the outcomes they give
when run directly; an installed copy of the package is never tested in the candidate's stead;
a Python started without the harness's hook meets the bytecode trap (runc and runsc); a module
named like the standard library's is named before the night."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import docker
import pytest

from orchestrator.errors import UserError
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import contract_for, git, make_repo
from tests.test_install import _wheel

ROOT = Path(__file__).resolve().parents[1]
_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+?)(?: - .*)?$", re.M)


def _project(tmp_path: Path, layout: str = "") -> Path:
    """inflection and its test file, committed, with the package under `layout` (e.g. "src/")."""
    repo = tmp_path / "project"
    shutil.copytree(ROOT / "examples/test-suite/inflection", repo / f"{layout}inflection")
    tests = repo / ("tests" if layout else ".")
    tests.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "examples/test-suite/test_inflection.py", tests / "test_inflection.py")
    make_repo(repo, {})
    return repo


def _baseline(repo: Path, sandbox, tag: str, **over: object):  # type: ignore[no-untyped-def]
    over = {"agent": {"kind": "none"}, "metric.name": "tests_passed", "metric.goal": "max",
            "budget.seconds": 120, "budget.baseline_repeats": 1, "sandbox.memory": "1g",
            "sandbox.pids": 256, **over}  # fmt: skip
    run = start_run(repo, tag, contract_for(repo, **over), "t", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    base = run.ledger.get(0)
    return base, (run.ledger.exp_dir(0) / "output.log").read_text()


def test_the_suite_through_the_harness_gives_the_outcomes_it_gives_directly(
    tmp_path: Path, sandbox
) -> None:
    repo = _project(tmp_path)
    judge = {"implementation.paths": ["inflection/**"], "evaluator.paths": ["test_inflection.py"],
             "evaluator.command": "python -m autoresearch_harness.suite -rA test_inflection.py"}  # fmt: skip
    harness, through = _baseline(repo, sandbox, "harness", **judge)
    direct, plain = _baseline(repo, sandbox, "direct", **judge, **{"evaluator.isolation": "shared"})
    ours = {test: outcome for outcome, test in _OUTCOME.findall(through)}
    theirs = {test: outcome for outcome, test in _OUTCOME.findall(plain)}
    assert len(theirs) == 455 and direct.metrics["tests_passed"] == 455, plain[-2000:]
    same = sum(1 for test, outcome in theirs.items() if ours.get(test) == outcome)
    assert same == 455, (same, through[-3000:])
    assert harness.metrics["tests_passed"] == 455 and harness.metrics["tests_failed"] == 0


def test_an_installed_copy_is_refused_never_tested_in_the_candidates_stead(
    tmp_path: Path, sandbox
) -> None:
    repo = _project(tmp_path, layout="src/")
    init = repo / "src/inflection/__init__.py"
    init.write_text(
        init.read_text().replace(
            "    if not word or word.lower() in UNCOUNTABLES:", "    if not word:"
        )
    )  # fmt: skip  (a behaviour break)
    wheel = _wheel(repo / "wheels", "inflection", "0.5.1",
                   {"inflection/__init__.py": init.read_text().replace("if not word:", "if not word or word.lower() in UNCOUNTABLES:")})  # fmt: skip
    (repo / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the package installed in the image too, unbroken")
    judge = {"implementation.paths": ["src/inflection/**"], "evaluator.paths": ["tests/test_inflection.py"],
             "sandbox.requirements": "requirements.txt"}  # fmt: skip
    # the src layout without src on the path: in a direct run, pytest would test the installed copy
    refused, log = _baseline(repo, sandbox, "shadowed", **judge, **{
        "evaluator.command": "python -m autoresearch_harness.suite tests"})  # fmt: skip
    assert refused.status == "crash" or refused.metrics.get("tests_failed", 0) > 0, log[-2000:]
    assert "this import would load /usr/" in log and "/trusted/src/inflection/__init__.py" in log
    # with src on the path, the candidate's (broken) copy is what the suite tests
    tested, log = _baseline(repo, sandbox, "tested", **judge, **{
        "evaluator.command": "PYTHONPATH=src python -m autoresearch_harness.suite tests"})  # fmt: skip
    assert tested.metrics["tests_failed"] > 0 and tested.metrics["tests_total"] == 455, log[-2000:]


@pytest.fixture(scope="module", params=["runc", "runsc"])
def runtime(request, docker_client: docker.DockerClient) -> str:  # type: ignore[no-untyped-def]
    if request.param not in (docker_client.info().get("Runtimes") or {}):
        pytest.fail(
            f"{request.param} is not registered with this Docker engine — run `make engine`"
        )
    return str(request.param)


TRAPPED = """import subprocess, sys
for flags in (["-s"], ["-S"], ["-E", "-s"], []):
    done = subprocess.run([sys.executable, *flags, "-c", "import sys; sys.path.insert(0, ''); import impl; print('RAN', impl.score())"],
                          capture_output=True, text=True)
    print(flags, "RAN" in done.stdout, done.stderr.strip().splitlines()[-1:] if done.returncode else "")
print("score: 1")
"""


def test_a_python_without_the_hook_meets_the_trap(tmp_path: Path, sandbox, runtime: str) -> None:
    from tests.conftest import IMPL

    repo = make_repo(tmp_path / "trap", {"impl.py": IMPL, "probe.py": TRAPPED})
    base, log = _baseline(repo, sandbox, "trap", **{
        "evaluator.command": "python probe.py", "evaluator.paths": ["probe.py"],
        "metric.name": "score", "metric.goal": "min", "sandbox.runtime": runtime})  # fmt: skip
    assert base.status == "keep", log
    lines = {line.split("]")[0] + "]": line for line in log.splitlines() if line.startswith("[")}
    for flags in ("['-s']", "['-S']", "['-E', '-s']"):
        assert "False" in lines[flags] and "the implementation's" in lines[flags], log
    assert "True" in lines["[]"]  # with the hook: a stand-in, the candidate's code in its worker


def test_a_module_named_like_the_standard_librarys_is_named_before_the_night(
    tmp_path: Path, sandbox
) -> None:
    """An implementation file at the top named like a standard library module never loads for
    that name in harness mode: `doctor` and the start of a run say so, and the baseline shows
    why (the evaluator's `import statistics` is refused, naming the file)."""
    from orchestrator.doctor import module_checks
    from tests.conftest import IMPL

    evaluator = "import statistics\nprint('score:', statistics.mean([1, 2]))\n"
    repo = make_repo(tmp_path / "named", {"impl.py": IMPL, "statistics.py": "def mean(xs):\n    return 0\n",
                                          "bench.py": evaluator})  # fmt: skip
    over = {"implementation.paths": ["impl.py", "statistics.py"], "evaluator.paths": ["bench.py"],
            "evaluator.command": "python bench.py", "metric.name": "score", "metric.goal": "min"}  # fmt: skip
    contract = contract_for(repo, **over)
    lines = [c.line() for c in module_checks(contract, repo)]
    assert any(
        "statistics.py is named like the standard library's statistics" in ln for ln in lines
    )
    said: list[str] = []
    run = start_run(
        repo, "named", contract, "t", sandbox, say=said.append, backoff=Backoff(0.1, 0.5)
    )
    assert any(s.startswith("warning: statistics.py is named like") for s in said), said
    with pytest.raises(UserError, match=r"baseline crashed .*statistics\.py would shadow the "
                       r"standard library's statistics"):  # fmt: skip
        run.execute()
    shared = contract_for(repo, **over, **{"evaluator.isolation": "shared"})
    assert not any("module names" in c.line() for c in module_checks(shared, repo))
