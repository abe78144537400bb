"""`report TAG --serve`: the report on http://127.0.0.1:<port>/, rewritten as the night goes.

Read-only, loopback only, stdlib `http.server`. It serves exactly the report, its
plot and the per-experiment pages the report links (`pages.py`) — a fixed set of
names, matched whole, never a path joined from the request, so `..` and its
encodings find nothing. A request for the report rewrites it first when the ledger
changed and the last rewrite is older than `min_interval_s` (the `Refresher`), so a
browser on the box, or through an SSH tunnel, shows the night while it runs.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator.errors import UserError
from orchestrator.experiment import IN_FLIGHT
from orchestrator.ledger import Ledger
from orchestrator.morning.pages import PAGES
from orchestrator.workspace import Workspace

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
_EXPERIMENT_PAGE = re.compile(r"/experiments/(\d{4,6})/(" + "|".join(map(re.escape, PAGES)) + ")")
_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png"}
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    # Defence in depth behind the escaping: nothing is fetched from elsewhere, no forms.
    "Content-Security-Policy": "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; form-action 'none'; frame-ancestors 'none'",
}


class Refresher:
    """Rewrites the report when the ledger changed, at most once per `min_interval_s`."""

    def __init__(
        self, ledger: Ledger, ws: Workspace, contract: Any, min_interval_s: float = 5.0
    ) -> None:
        self.ledger, self.ws, self.contract = ledger, ws, contract
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._seen: object = None
        self._at = 0.0

    def _version(self) -> object:
        """What the report shows changing: the rows, their phases in flight, the run's end."""
        exps = self.ledger.experiments()  # incremental: costs what is in flight
        info = self.ledger.run()
        flying = tuple((e.id, e.phase) for e in exps if e.phase in (*IN_FLIGHT, "proposing"))
        return len(exps), flying, info.stopped if info else None

    def maybe(self, force: bool = False) -> bool:
        """Rewrite report.html if it is due; whether it was rewritten."""
        from orchestrator.morning.report import write_report

        with self._lock:
            if not force and time.monotonic() - self._at < self.min_interval_s:
                return False
            version = self._version()
            if not force and version == self._seen:
                return False
            write_report(self.ledger, self.ws, self.contract)
            self._seen, self._at = version, time.monotonic()
            return True


def resolve(run_dir: Path, raw: str) -> Path | None:
    """The file a request path names, or None: only the report's own files, by exact name."""
    path = urlsplit(raw).path
    if path != unquote(path):  # nothing the report links needs escaping
        return None
    if path in ("/", "/report.html"):
        return run_dir / "report.html"
    if path == "/progress.png":
        return run_dir / "progress.png"
    m = _EXPERIMENT_PAGE.fullmatch(path)
    if m is None:
        return None
    return run_dir / "experiments" / f"{int(m.group(1)):04d}" / m.group(2)


def make_server(refresher: Refresher, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:`port` (0: any free port); `serve_forever()` runs it."""
    run_dir = refresher.ledger.dir

    class Handler(BaseHTTPRequestHandler):
        server_version = "autoresearch"
        sys_version = ""

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            target = resolve(run_dir, self.path)
            if target is not None and target.name == "report.html":
                with contextlib.suppress(Exception):  # else the last one written is served
                    refresher.maybe()
            if target is None or not target.is_file():
                self.send_error(HTTPStatus.NOT_FOUND, "not part of the report")
                return
            data = target.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", _TYPES[target.suffix])
            self.send_header("Content-Length", str(len(data)))
            for k, v in _HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the terminal is the user's

    server = ThreadingHTTPServer((HOST, port), Handler)
    server.daemon_threads = True
    return server


def serve(ledger: Ledger, ws: Workspace, contract: Any, port: int, say: Any = print) -> None:
    """Write the report, then serve it until Ctrl-C."""
    refresher = Refresher(ledger, ws, contract)
    refresher.maybe(force=True)
    try:
        server = make_server(refresher, port)
    except OSError as e:
        raise UserError(
            f"cannot listen on {HOST}:{port} ({e.strerror}) — pick another --port (0: any free one)"
        ) from None
    say(
        f"serving run {ws.tag}'s report on http://{HOST}:{server.server_address[1]}/ — Ctrl-C stops"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
