"""Trusted evaluator for examples/latency (mounted read-only: the agent cannot change it).

Checks `count_primes` against reference counts, then reports latency percentiles
over many calls. Any wrong answer exits non-zero, which the orchestrator records
as a crash.
"""

import statistics
import sys
import time

from primes import count_primes

REFERENCE = {500: 95, 1000: 168, 2000: 303, 4000: 550}
CALLS_PER_LIMIT = 8

for limit, want in REFERENCE.items():
    got = count_primes(limit)
    if got != want:
        print(f"wrong answer: count_primes({limit}) = {got}, expected {want}")
        sys.exit(1)

samples = []
for _ in range(CALLS_PER_LIMIT):
    for limit in REFERENCE:
        t0 = time.perf_counter()
        count_primes(limit)
        samples.append((time.perf_counter() - t0) * 1000)

q = statistics.quantiles(samples, n=100)
print(f"p50_ms: {statistics.median(samples):.4f}")
print(f"p95_ms: {q[94]:.4f}")
print(f"p99_ms: {q[98]:.4f}")
