"""What one run's gateway may take of the host's process, whatever its container sends.

The orchestrator's process serves every slot's gateway, so one experiment's flood must not
grow it. A run's services share `Limits`: at most `connections` connections are served at
once, each on a worker thread of one pool (started as needed, never more); a connection
past that is not accepted: it waits in its socket's backlog in the kernel, and past the
backlog the container's connect is refused (EAGAIN) — no thread, descriptor or buffer of
ours. A request body is read only once its declared length is reserved in a byte budget
the run's connections share (`buffered`): a body larger than the budget is refused before
any of it is read, others wait for room.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CONNECTIONS = 16
"""Connections one run's gateway serves at once (each on one host thread), all services together."""
BUFFERED = 64 * 1024**2
"""Request body bytes one run's gateway holds at once, all connections together (bytes)."""
BACKLOG = 128
"""Connections that wait in each service socket's backlog (kernel memory, not ours)."""
POLL_S = 0.05


class Budget:
    """Bytes shared by a run's connections: `take(n)` waits for room, `give(n)` returns it."""

    def __init__(self, total: int) -> None:
        self.total, self.free = total, total
        self._cond = threading.Condition()
        self._closed = False

    def take(self, n: int, timeout_s: float) -> bool:
        """Reserve `n` bytes; False when they never fit, the wait timed out or the run is over."""
        if n > self.total:
            return False
        with self._cond:
            ok = self._cond.wait_for(lambda: self._closed or self.free >= n, timeout_s)
            if not ok or self._closed:
                return False
            self.free -= n
            return True

    def give(self, n: int) -> None:
        with self._cond:
            self.free += n
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Limits:
    """One run's bounds: the worker pool, its slots, the byte budget, the connections in hand."""

    def __init__(self, connections: int = CONNECTIONS, buffered: int = BUFFERED) -> None:
        self.slots = threading.BoundedSemaphore(connections)
        self.pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="gateway")
        self.budget = Budget(buffered)
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()

    def serve(self, work: Callable[[], None], conn: socket.socket) -> None:
        """Run `work` on a worker (a slot already taken); the slot is given back after it."""
        with self._lock:
            self._live.add(conn)
        try:
            self.pool.submit(self._run, work, conn)
        except RuntimeError:  # the pool is shut: the run is over
            self._done(conn)

    def _run(self, work: Callable[[], None], conn: socket.socket) -> None:
        try:
            work()
        except Exception:  # a connection's failure is the container's: never logged
            pass
        finally:
            self._done(conn)

    def _done(self, conn: socket.socket) -> None:
        with self._lock:
            self._live.discard(conn)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
        conn.close()
        self.slots.release()

    def close(self) -> None:
        """Cut every connection still served and every wait for room; wait for the workers."""
        self.budget.close()
        with self._lock:
            live = list(self._live)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.pool.shutdown(wait=True)


class Listener(socketserver.UnixStreamServer):
    """One service's socket: a connection is accepted only when a worker of the run is free."""

    request_queue_size = BACKLOG
    allow_reuse_address = False

    def __init__(self, path: str, handler: Any, limits: Limits) -> None:
        self.limits = limits
        super().__init__(path, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        if not self.limits.slots.acquire(timeout=POLL_S):
            raise OSError("every worker is busy")  # socketserver tries again; the peer waits
        try:
            return super().get_request()  # type: ignore[no-any-return]
        except OSError:
            self.limits.slots.release()
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        self.limits.serve(lambda: self.finish_request(conn, client_address), conn)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Never print: what failed is the container's connection."""
