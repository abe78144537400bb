"""A small HTTP item service (trusted; its settings come from the implementation's config.py,
which runs in the candidate's worker: only its numbers cross).

GET /item/<n> returns item n, which costs CPU to compute: a stand-in for a
backend call with a per-call overhead and a per-item cost.
"""

import hashlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import config as candidate

CALL_OVERHEAD = 1000  # hash rounds per backend call
PER_ITEM = 500  # hash rounds per item


class Settings:
    """The candidate's config, read once and checked: numbers only cross into the service."""

    def __init__(self) -> None:
        for name in ("POOL_SIZE", "TIMEOUT_S", "CACHE_TTL_S", "BATCH_SIZE"):
            value = getattr(candidate, name)
            if type(value) not in (int, float):
                sys.exit(f"config.{name} must be a number")
            setattr(self, name, value)


config = Settings()
slots = threading.BoundedSemaphore(max(1, int(config.POOL_SIZE)))
cache: dict[int, tuple[float, str]] = {}
lock = threading.Lock()


def _hash(rounds: int, seed: bytes) -> str:
    h = seed
    for _ in range(rounds):
        h = hashlib.sha256(h).digest()
    return h.hex()[:16]


def backend(first: int) -> dict[int, str]:
    """One backend call: BATCH_SIZE items starting at `first`."""
    n = max(1, int(config.BATCH_SIZE))
    _hash(CALL_OVERHEAD, b"call")
    return {i: _hash(PER_ITEM, str(i).encode()) for i in range(first, first + n)}


def item(n: int) -> str:
    now = time.monotonic()
    with lock:
        hit = cache.get(n)
    if hit and now - hit[0] < config.CACHE_TTL_S:
        return hit[1]
    fetched = backend(n)
    if config.CACHE_TTL_S > 0:
        with lock:
            for k, v in fetched.items():
                cache[k] = (now, v)
    return fetched[n]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if not slots.acquire(timeout=config.TIMEOUT_S):
            self.send_error(503, "busy")
            return
        try:
            body = item(int(self.path.rsplit("/", 1)[1])).encode()
        finally:
            slots.release()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # a short accept backlog would add SYN-retry seconds to the tail
    daemon_threads = True


if __name__ == "__main__":
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()
