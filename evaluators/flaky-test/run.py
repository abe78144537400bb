"""Trusted evaluator for examples/flaky-test: how often does the flaky test pass?

Runs `test_get_after_load` 200 times (pass_rate, higher is better) and every other
test once (tests_failed must stay 0: a constraint in the contract).
"""

import inspect
import traceback

import test_cache

RUNS = 200  # enough that the pass rate's own noise (binomial, ±0.035 at 0.5) is far below the fix's gain
passed = 0
for _ in range(RUNS):
    try:
        test_cache.test_get_after_load()
        passed += 1
    except Exception:
        pass
failed = 0
for name, fn in inspect.getmembers(test_cache, inspect.isfunction):
    if name.startswith("test_") and name != "test_get_after_load":
        try:
            fn()
        except Exception:
            failed += 1
            traceback.print_exc()
print(f"pass_rate: {passed / RUNS:.4f}")
print(f"tests_failed: {failed}")
