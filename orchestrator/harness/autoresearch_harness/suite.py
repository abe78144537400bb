"""A project's own pytest suite as the trusted judge: run it, count it, measure the code.

    python -m autoresearch_harness.suite [--size FILE]... [--complexity FILE]... \\
        [--test-timeout S] [--ignore-addopts] [PYTEST ARGS...]

Runs pytest in this (trusted) process: the tests, their fixtures, assertions and
the evaluator's conftest.py are trusted code; the implementation they import is a
stand-in for the candidate's worker (harness mode). Counting is done here, by a
plugin of ours, from pytest's own reports, never from anything pytest prints.
Then it prints, as its very last lines (the last occurrence of a metric wins, so
nothing printed earlier, a test's output or a failure report quoting candidate
text, can stand in for them):

    tests_total: 455        tests collected (a test that never reports counts as failed)
    tests_passed: 455
    tests_failed: 0         failed, errored, timed out or never reported, plus collection errors
    tests_skipped: 0
    tests_s: 1.83           the suite's wall time
    lines: 301              non-blank, non-comment lines of the --size files (as frozen)
    complexity: 87          radon's cyclomatic complexity, summed over the --complexity files

and ends the process at once (a thread a test left running cannot print after
them). A test that runs past --test-timeout (default 120 s) fails with
TimeoutError. Doctests of the implementation's modules are deselected: a
docstring of the implementation is the candidate's code, never run here. The
cache plugin is off (the trusted tree is read-only).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
import time
import tokenize
from typing import Any


class Count:
    """A pytest plugin: the outcome of every test, from pytest's reports."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.collected = 0
        self.collect_errors = 0
        self.outcome: dict[str, str] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors += 1

    def pytest_collection_modifyitems(self, session: Any, config: Any, items: list[Any]) -> None:
        """Doctests of the implementation's modules are the candidate's code: never run here."""
        ours = [item for item in items if _candidate_doctest(item)]
        if ours:
            config.hook.pytest_deselected(items=ours)
            items[:] = [item for item in items if not _candidate_doctest(item)]
        self.collected = len(items)

    def pytest_runtest_logreport(self, report: Any) -> None:
        now = self.outcome.get(report.nodeid)
        if report.failed:
            self.outcome[report.nodeid] = "failed"
        elif report.skipped and now != "failed":
            self.outcome[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed and now is None:
            self.outcome[report.nodeid] = "passed"

    def pytest_runtest_call(self, item: Any) -> None:
        if self.timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
            return
        limit = self.timeout_s

        def late(signum: int, frame: Any) -> None:
            raise TimeoutError(f"the test ran past {limit:g} s (--test-timeout)")

        signal.signal(signal.SIGALRM, late)
        signal.setitimer(signal.ITIMER_REAL, limit)

    def pytest_runtest_teardown(self, item: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)

    def figures(self) -> dict[str, int]:
        values = list(self.outcome.values())
        passed, skipped = values.count("passed"), values.count("skipped")
        total = max(self.collected, len(self.outcome))
        return {
            "tests_total": total,
            "tests_passed": passed,
            "tests_failed": total - passed - skipped + self.collect_errors,
            "tests_skipped": skipped,
        }


def _candidate_doctest(item: Any) -> bool:
    if type(item).__name__ != "DoctestItem":
        return False
    root = os.environ.get("AUTORESEARCH_TRUSTED_ROOT") or os.getcwd()
    files = json.loads(os.environ.get("AUTORESEARCH_IMPLEMENTATION", "[]"))
    where = os.path.relpath(os.path.abspath(str(item.path)), root)
    return where in files


def code_lines(path: str) -> int:
    """Non-blank lines that are not only a comment."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.strip() and not line.strip().startswith("#"))


def complexity(path: str) -> int:
    """radon's cyclomatic complexity of a file, summed over its blocks (the file read as data)."""
    from radon.complexity import cc_visit  # type: ignore[import-not-found]  # in the image

    with open(path, encoding="utf-8", errors="replace") as f:
        source = f.read()
    try:
        return int(sum(block.complexity for block in cc_visit(source)))
    except (SyntaxError, tokenize.TokenError):
        return 10**6  # what does not parse is not simpler


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m autoresearch_harness.suite")
    parser.add_argument("--size", action="append", default=[], metavar="FILE")
    parser.add_argument("--complexity", action="append", default=[], metavar="FILE")
    parser.add_argument("--test-timeout", type=float, default=120.0, metavar="S")
    parser.add_argument("--ignore-addopts", action="store_true",
                        help="ignore the project's addopts (plugins it names may not be installed)")  # fmt: skip
    args, pytest_args = parser.parse_known_args(argv)
    import pytest

    count = Count(args.test_timeout)
    extra = ["-p", "no:cacheprovider"]
    if args.ignore_addopts:
        extra += ["-o", "addopts="]
    started = time.perf_counter()
    code = pytest.main([*extra, *pytest_args], plugins=[count])
    took = time.perf_counter() - started
    figures = dict(count.figures())
    if code not in (0, 1, 5):  # interrupted, internal or usage error: nothing can be trusted
        figures["tests_failed"] = max(figures["tests_failed"], 1)
    lines = [f"{name}: {value}" for name, value in figures.items()]
    lines.append(f"tests_s: {took:.3f}")
    problem = None
    try:
        if args.size:
            lines.append(f"lines: {sum(code_lines(p) for p in args.size)}")
        if args.complexity:
            lines.append(f"complexity: {sum(complexity(p) for p in args.complexity)}")
    except (OSError, ImportError) as e:
        problem = f"suite: cannot measure the code ({type(e).__name__}: {e})"
    out = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), encoding="utf-8")
    sys.stdout.flush()
    sys.stderr.flush()
    out.write("\n" + "\n".join(lines) + "\n" + (problem + "\n" if problem else ""))
    out.flush()
    os._exit(2 if problem else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
