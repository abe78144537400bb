"""`make bench`, the gateway under a flood: what one experiment costs the orchestrator's process.

One experiment's evaluator (in its container, harness isolation, the default mode)
opens FLOOD connections straight to its service's socket in /services, each declaring
an 8 MiB body and sending 256 KiB of it, plus BIG connections that each send a 40 MiB
body whole (`max_bytes` off), for SECONDS; it keeps opening connections as fast as the
socket takes them, then closes them all and makes one ordinary request. This process
(the orchestrator's, which serves every slot's gateway) is sampled every 10 ms: its
threads (/proc/self/task), open descriptors (/proc/self/fd) and RSS. The upstream is a
fake on 127.0.0.1 in a process of its own, so the figures are the gateway's alone.

    python -m tests.bench_gateway
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOOD, DECLARED, SENT = 2000, 8 * 1024**2, 256 * 1024
BIG, BIG_BODY = 8, 40 * 1024**2
SECONDS = 8.0
PROBE = f"""
import queue, socket, threading, time

N, DECLARED, SENT, BIG, BIG_BODY, SECONDS = {FLOOD}, {DECLARED}, {SENT}, {BIG}, {BIG_BODY}, {SECONDS}
CHUNK = memoryview(b"x" * 65536)
wanted = [(BIG_BODY, BIG_BODY)] * BIG + [(DECLARED, SENT)] * N
ready, counts, over = queue.SimpleQueue(), {{"refused": 0}}, threading.Event()


def opener():  # a thread: under gVisor a connect to a full backlog blocks, whatever O_NONBLOCK says
    for declared, body in wanted:
        while not over.is_set():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect("/services/llm")
            except OSError:  # the backlog is full (EAGAIN): try again
                s.close()
                counts["refused"] += 1
                time.sleep(0.001)
                continue
            head = b"POST /v1/messages HTTP/1.1\\r\\nhost: x\\r\\ncontent-length: %d\\r\\n\\r\\n" % declared
            ready.put([s, memoryview(head), body])
            break


threading.Thread(target=opener, daemon=True).start()
conns, sent = [], 0
deadline = time.monotonic() + SECONDS
while time.monotonic() < deadline:
    moved = False
    while not ready.empty():
        conns.append(ready.get())
    for c in conns:
        try:
            if c[1]:
                c[1] = c[1][c[0].send(c[1]):]
            elif c[2]:
                n = c[0].send(CHUNK[: min(c[2], len(CHUNK))])
                c[2] -= n
                sent += n
            else:
                continue
            moved = True
        except BlockingIOError:
            pass
        except OSError:  # answered and closed by the gateway
            c[1], c[2] = b"", 0
    if not moved:
        time.sleep(0.005)
over.set()
while not ready.empty():
    conns.append(ready.get())
for c in conns:
    c[0].close()
out["opened"], out["refused_connects"], out["sent_mib"] = len(conns), counts["refused"], sent / 2**20
out["after"] = call("POST", "/v1/messages", body=b"{{}}")[0]
"""
UPSTREAM = """
import http.server, sys

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        left = int(self.headers.get("content-length") or 0)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

class S(http.server.ThreadingHTTPServer):
    request_queue_size = 128

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


@dataclass(frozen=True)
class Sample:
    threads: int
    fds: int
    rss_mib: float


def sample() -> Sample:
    """This process now: OS threads, open descriptors, resident memory."""
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return Sample(len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd")), rss / 2**20)


class Sampler:
    """Samples this process every 10 ms while it runs; `peak` is each figure's largest."""

    def __init__(self) -> None:
        self.before = sample()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            s = sample()
            p = self.peak
            self.peak = Sample(
                max(p.threads, s.threads), max(p.fds, s.fds), max(p.rss_mib, s.rss_mib)
            )

    def stop(self) -> Sample:
        self._stop.set()
        self._thread.join()
        return sample()


@contextmanager
def upstream() -> Iterator[str]:
    """A fake upstream on 127.0.0.1 in a process of its own; its base URL."""
    proc = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.kill()
        proc.wait()


def flood(tmp: Path, sandbox: Any, runtime: str = "runc") -> dict[str, Any]:
    """Run the flood in one experiment; this process's figures before, at peak and after, and
    what the flood itself saw (`probe`) and the gateway counted (`figures`)."""
    from orchestrator.contract.metrics import measured
    from tests.test_gateway import run

    with upstream() as url:
        service = {"name": "llm", "upstream": url, "paths": ["/v1/messages"], "max_bytes": None}
        sampler = Sampler()
        over = {"sandbox.runtime": runtime, "sandbox.nofile": 8192, "sandbox.memory": "1g"}
        result, probe = run(tmp, sandbox, PROBE, [service], **over)
        after = sampler.stop()
    return {
        "before": sampler.before,
        "peak": sampler.peak,
        "after": after,
        "probe": probe,
        "figures": {k: v for k, v in measured(result).items() if k.startswith("gateway.")},
    }


def section(runtime: str = "runc") -> None:
    from orchestrator.sandbox.docker import DockerSandbox

    os.environ.setdefault("GATEWAY_TEST_KEY", "unused")  # the service's key: never sent anywhere

    with tempfile.TemporaryDirectory() as tmp:
        got = flood(Path(tmp), DockerSandbox(), runtime)
    before, peak, after, probe = got["before"], got["peak"], got["after"], got["probe"]
    print(
        f"\ngateway under a flood ({runtime}): {FLOOD} connections declaring 8 MiB and sending "
        f"256 KiB, {BIG} sending 40 MiB, for {SECONDS:g} s, on one experiment's socket\n"
    )
    print("| orchestrator process | before | peak | after |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| threads | {before.threads} | {peak.threads} | {after.threads} |")
    print(f"| open descriptors | {before.fds} | {peak.fds} | {after.fds} |")
    print(f"| RSS (MiB) | {before.rss_mib:.0f} | {peak.rss_mib:.0f} | {after.rss_mib:.0f} |")
    print(
        f"\nthe flood: {probe['opened']} connections taken, {probe['refused_connects']} connects "
        f"refused at a full backlog, {probe['sent_mib']:.0f} MiB sent; "
        f"a request after it: HTTP {probe['after']}"
    )


if __name__ == "__main__":
    section()
