"""Trusted evaluator for examples/refactor: cyclomatic complexity (radon), tests as a constraint.

Prints `complexity` (the sum of radon's cyclomatic complexity over the module's
blocks, lower is better) and `tests_failed` (must be 0).
"""

import sys
from pathlib import Path

import pytest
from radon.complexity import cc_visit

source = Path("examples/refactor/pricing.py").read_text()
complexity = sum(block.complexity for block in cc_visit(source))


class Count:
    failed = 0

    def pytest_runtest_logreport(self, report):  # noqa: D401 - pytest hook
        if report.failed:
            Count.failed += 1


code = pytest.main(["-q", "-p", "no:cacheprovider", "evaluators/refactor/test_pricing.py"], plugins=[Count()])
print(f"complexity: {complexity}")
print(f"tests_failed: {Count.failed if code in (0, 1) else 99}")
sys.exit(0)
