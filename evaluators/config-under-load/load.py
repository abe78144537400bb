"""Trusted evaluator for examples/config-under-load: a fixed, repeatable load over loopback.

Starts the (trusted) service with the candidate's config.py, sends 400 GET requests
from 8 client threads (item ids drawn from a skewed distribution, fresh each run
from the harness's seed), and reports the service's CPU seconds per request (read
from the kernel, /proc), latency percentiles and the error rate.
"""

import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import autoresearch_harness as harness

REQUESTS, CLIENTS = 400, 8
rng = harness.rng()  # a fresh load every run, from a seed the candidate never sees
ids = [min(int(rng.paretovariate(1.2)), 200) for _ in range(REQUESTS)]

env = {**os.environ, "PYTHONPATH": "examples/config-under-load"}
service = subprocess.Popen([sys.executable, "evaluators/config-under-load/service.py"], stdout=subprocess.PIPE, env=env)
port = int(service.stdout.readline())


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


latencies: list[float] = []
errors = 0
guard = threading.Lock()
queue = list(enumerate(ids))


def client() -> None:
    global errors
    while True:
        with guard:
            if not queue:
                return
            _, n = queue.pop()
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/item/{n}", timeout=5) as r:
                r.read()
            ok = True
        except Exception:
            ok = False
        with guard:
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += not ok


cpu0 = cpu_seconds(service.pid)
threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
cpu = cpu_seconds(service.pid) - cpu0
service.kill()
q = statistics.quantiles(latencies, n=100)
print(f"cpu_ms_per_request: {cpu * 1000 / REQUESTS:.4f}")
print(f"p50_ms: {statistics.median(latencies):.2f}")
print(f"p99_ms: {q[98]:.2f}")
print(f"error_rate: {errors / REQUESTS:.4f}")
