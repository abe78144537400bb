"""Trusted evaluator for examples/latency (runs on the trusted side: the agent cannot change it).

Draws this run's limits (near 500, 1000, 2000 and 4000) from the harness's seed (the
candidate never sees it), checks
`count_primes` against a trusted reference on every one, then reports latency
percentiles over many calls, timed here. `count_primes` runs in the candidate's
worker, so each call's time includes one round trip to it (tens of microseconds),
the same for every candidate. Any wrong answer exits non-zero: a crash.
"""

import statistics
import sys
import time

import autoresearch_harness as harness
from primes import count_primes


def reference(limit: int) -> int:
    """The trusted answer: a plain sieve of Eratosthenes."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


rng = harness.rng()
# Fresh limits every run, near the same four sizes, so runs stay comparable.
limits = [size + rng.randrange(0, 50) for size in (500, 1000, 2000, 4000)]
CALLS_PER_LIMIT = 8

for limit in limits:
    got, want = count_primes(limit), reference(limit)
    if type(got) is not int or got != want:
        print(f"wrong answer: count_primes({limit}) = {got!r}, expected {want}")
        sys.exit(1)

samples = []
for _ in range(CALLS_PER_LIMIT):
    for limit in limits:
        t0 = time.perf_counter()
        count_primes(limit)
        samples.append((time.perf_counter() - t0) * 1000)

q = statistics.quantiles(samples, n=100)
print(f"p50_ms: {statistics.median(samples):.4f}")
print(f"p95_ms: {q[94]:.4f}")
print(f"p99_ms: {q[98]:.4f}")
