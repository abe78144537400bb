"""Trusted evaluator for examples/refactor: cyclomatic complexity (radon), behaviour as a constraint.

Prints `complexity` (the sum of radon's cyclomatic complexity over the blocks of the
candidate's pricing.py — the file that would merge, read from the frozen commit,
never from the candidate's process) and `tests_failed` (must be 0): the pinned
tests, plus the candidate's `price` against the original function on 300 orders
drawn fresh from this run's seed.
"""

import sys

import autoresearch_harness as harness
import pytest
from radon.complexity import cc_visit
from reference import price as original

from pricing import price

complexity = sum(block.complexity for block in cc_visit(harness.source("examples/refactor/pricing.py")))


class Count:
    failed = 0

    def pytest_runtest_logreport(self, report):  # noqa: D401 - pytest hook
        if report.failed:
            Count.failed += 1


def outcome(fn, *args):
    """What a call gives: its value, or the kind of error it raised."""
    try:
        return ("value", fn(*args))
    except ValueError:
        return ("ValueError", None)


rng = harness.rng()
orders = [
    (rng.choice(["book", "pen", "mug"]), rng.randrange(0, 40), rng.random() < 0.5,
     rng.choice([None, None, "TEN", "HALF", "BOGUS"]))
    for _ in range(300)
]  # fmt: skip
mismatches = sum(outcome(price, *o) != outcome(original, *o) for o in orders)
code = pytest.main(["-q", "-p", "no:cacheprovider", "evaluators/refactor/test_pricing.py"], plugins=[Count()])
print(f"complexity: {complexity}")
print(f"behaviour_mismatches: {mismatches}")
print(f"tests_failed: {(Count.failed if code in (0, 1) else 99) + mismatches}")
sys.exit(0)
