"""Starting the candidate's worker inside a running harness-mode container, and keeping
what it prints apart from the evaluator's output.

The engine starts it (`docker exec`) as the candidate's user, with the
container's environment and limits (the same capabilities dropped, the same
no-new-privileges, the same pids and memory). Its output is read in a thread,
keeping the tail; it never joins the metric channel.
"""

from __future__ import annotations

import contextlib
import threading

import requests
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from orchestrator.sandbox import Worker


class WorkerOutput:
    """The worker's exec and the tail of its output (at most `cap` bytes kept)."""

    def __init__(
        self, container: Container, worker: Worker, cap: int, env: dict[str, str] | None = None
    ) -> None:
        """`env`: the attempt's variables (a container made ahead holds its first values)."""
        self.cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()
        api = container.client.api
        exec_id = api.exec_create(
            container.id, list(worker.command), user=worker.user, workdir=worker.workdir,
            stdout=True, stderr=True, stdin=False, tty=False, environment=env or None,
        )["Id"]  # fmt: skip
        self._stream = api.exec_start(exec_id, stream=True, demux=False)
        self._thread = threading.Thread(target=self._read, name="worker-output", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(APIError, NotFound, requests.RequestException, OSError):
            for chunk in self._stream:
                with self._lock:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size - len(self._chunks[0]) >= self.cap and len(self._chunks) > 1:
                        self._size -= len(self._chunks.pop(0))

    def text(self, wait_s: float = 2.0) -> str:
        """What it printed, the tail kept (waits briefly for the stream to end)."""
        self._thread.join(timeout=wait_s)
        with self._lock:
            data = b"".join(self._chunks)
        return cap_tail(data, self.cap)


def cap_tail(data: bytes, limit: int) -> str:
    """The text of `data`'s last `limit` bytes, saying how many were cut before them."""
    if len(data) > limit:
        cut = len(data) - limit
        data = f"[... {cut} bytes cut; tail kept ...]\n".encode() + data[cut:]
    return data.decode("utf-8", errors="replace")
