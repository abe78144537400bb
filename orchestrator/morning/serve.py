"""`report TAG --serve`: the report on http://127.0.0.1:<port>/, rewritten as the night goes.

Read-only, loopback only, stdlib `http.server`. It serves exactly the report, its
plot and the per-experiment pages the report links (`pages.py`) — a fixed set of
names, matched whole, never a path joined from the request, so `..` and its
encodings find nothing. A request for the report rewrites it first when the ledger
changed and the last rewrite is older than `min_interval_s` (the `Refresher`), so a
browser on the box, or through an SSH tunnel, shows the night while it runs; a
rewrite that fails is answered 500 with its reason (and said on the terminal),
never a silently stale page.

A request must name the server by a loopback name (`127.0.0.1`, `localhost`,
`[::1]`, any port: a tunnel may forward another one) in its Host header: a web
page whose own name an attacker points at 127.0.0.1 (DNS rebinding) is answered
421, so it cannot read the diffs and logs from the operator's browser. The page's
one script is allowed by its hash, no other inline script.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from orchestrator import sanitize
from orchestrator.errors import UserError
from orchestrator.experiment import IN_FLIGHT
from orchestrator.ledger import Ledger
from orchestrator.morning.pages import PAGES
from orchestrator.morning.report import SCRIPT
from orchestrator.workspace import Workspace

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
"""The names a Host header may give (with any port, or none)."""
_HOST_HEADER = re.compile(r"(\[::1\]|[^:\[\]]+)(?::(\d{1,5}))?")
_EXPERIMENT_PAGE = re.compile(r"/experiments/(\d{4,6})/(" + "|".join(map(re.escape, PAGES)) + ")")
_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png"}
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
"""The report's one script, by hash: an injected inline script (were the escaping to fail) never runs."""
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    # Defence in depth behind the escaping: nothing is fetched from elsewhere, no forms.
    "Content-Security-Policy": "default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; "
    f"script-src '{SCRIPT_HASH}'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
}


def loopback_host(header: str | None) -> bool:
    """Whether a Host header names this server by a loopback name (DNS rebinding names another)."""
    m = _HOST_HEADER.fullmatch((header or "").strip())
    return m is not None and m.group(1).lower() in LOOPBACK_NAMES


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


def make_server(
    refresher: Refresher, port: int = DEFAULT_PORT, say: Any = print
) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1:`port` (0: any free port); `serve_forever()` runs it.
    `say` hears of a rewrite of the report that failed (once per distinct reason)."""
    run_dir = refresher.ledger.dir
    said: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        server_version = "autoresearch"
        sys_version = ""

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            if not loopback_host(self.headers.get("Host")):
                self.send_error(HTTPStatus.MISDIRECTED_REQUEST, "not a loopback name",
                                "this server answers only 127.0.0.1, localhost and [::1]")  # fmt: skip
                return
            target = resolve(run_dir, self.path)
            if target is not None and target.name == "report.html" and not self._rewrite():
                return
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

        def _rewrite(self) -> bool:
            """Rewrite the report if due; on failure answer 500 with the reason, and say it."""
            try:
                refresher.maybe()
                return True
            except Exception as e:  # a report that cannot be drawn is a bug: shown, not hidden
                why = sanitize.field(f"{type(e).__name__}: {e}")[:300]
                if why not in said:
                    said.add(why)
                    say(f"error: the report could not be rewritten ({why}) — a bug: "
                        "`autoresearch report TAG` shows its traceback")  # fmt: skip
                self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR, "the report could not be rewritten",
                                f"{why} (a bug in autoresearch: see the terminal)")  # fmt: skip
                return False

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
        server = make_server(refresher, port, say)
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
