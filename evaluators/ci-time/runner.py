"""The CI runner: a trusted service on loopback that runs the pipeline's jobs and records them.

The pipeline (candidate code) asks; the runner runs every job itself, in a fresh
trusted process (`job.py`) on the pristine project, and keeps the record — as a CI
service runs the jobs a workflow file asks for, and the workflow cannot write the
checks' results. The API, JSON over HTTP:

    GET  /tests                              {"tests": {module: [test names]}}
    POST /lint  {"files": [...]}             lint these files of the project (default: all)
    POST /build {}                           {"artifact": id}: a fresh build of the package
    POST /test  {"artifact": id, "module": m, "tests": [names]}   a module's tests (default:
                                             all of them) on that build

Every answer holds `ok` and the job's `seconds`; a bad request is a 400. At most
`SLOTS` jobs run at once (the runner's executors); more wait their turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

JOB = Path(__file__).resolve().with_name("job.py")
SLOTS = 8
JOB_TIMEOUT_S = 60
MAX_REQUEST = 64 * 1024


class BadRequest(Exception):
    pass


@dataclass
class Record:
    """One job as the runner ran it: what was asked and what came out."""

    kind: str
    finished: float
    """time.perf_counter() when it ended: only jobs that ended inside the pipeline count."""
    ok: bool
    asked: list[str] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


class Runner:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.folder = Path(tempfile.mkdtemp(prefix="ci-runner-"))  # private: the trusted tmp
        self.slots = threading.Semaphore(SLOTS)
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.artifacts: dict[str, Path] = {}
        listing = self._job("list", [str(project)])
        if listing is None:
            raise RuntimeError("listing the project's tests failed")
        self.tests: dict[str, list[str]] = listing["tests"]
        self.files: list[str] = listing["files"]
        self.lines: dict[str, list[int]] = listing["lines"]

    @contextmanager
    def serving(self) -> Iterator[str]:
        """The runner's URL while it serves (on 127.0.0.1, a free port)."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()

    def finished_by(self, moment: float) -> list[Record]:
        """The jobs that ended before `moment` (the pipeline's end); later ones never count."""
        with self.lock:
            return [r for r in self.records if r.finished <= moment]

    # the jobs
    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        if path == "/lint":
            out = self._lint(body)
        elif path == "/build":
            out = self._build()
        elif path == "/test":
            out = self._test(body)
        else:
            raise BadRequest(f"no such job: {path}")
        return {**out, "seconds": round(time.perf_counter() - started, 3)}

    def _lint(self, body: dict[str, Any]) -> dict[str, Any]:
        files = body.get("files") or self.files
        if not isinstance(files, list) or not set(files) <= set(self.files):
            raise BadRequest(f"files must be a list of the project's files: {self.files}")
        result = self._job("lint", [str(self.project), *files])
        ok = result is not None and not result["problems"]
        self._record(Record("lint", time.perf_counter(), ok, list(files), result or {}))
        return {"ok": ok, "problems": (result or {}).get("problems", ["the lint job crashed"])}

    def _build(self) -> dict[str, Any]:
        with self.lock:
            artifact = f"b{len(self.artifacts) + 1}"
            self.artifacts[artifact] = dest = self.folder / f"{artifact}.zip"
        result = self._job("build", [str(self.project), str(dest)])
        self._record(Record("build", time.perf_counter(), result is not None, [artifact]))
        if result is None:
            dest.unlink(missing_ok=True)
        return {"ok": result is not None, "artifact": artifact}

    def _test(self, body: dict[str, Any]) -> dict[str, Any]:
        module, names = body.get("module"), body.get("tests") or []
        if module not in self.tests:
            raise BadRequest(f"module must be one of {sorted(self.tests)}")
        if not isinstance(names, list) or not set(names) <= set(self.tests[module]):
            raise BadRequest(f"tests must be a list of names of {module}: {self.tests[module]}")
        with self.lock:
            dest = self.artifacts.get(str(body.get("artifact")))
        if dest is None or not dest.exists():
            raise BadRequest("artifact must be the id of a build that succeeded")
        asked = [f"{module}.{n}" for n in (names or self.tests[module])]
        result = self._job("test", [str(dest), str(self.project), module, *names])
        outcomes = {f"{module}.{k}": v for k, v in (result or {}).get("outcomes", {}).items()}
        ok = result is not None and all(outcomes.get(t) == "passed" for t in asked)
        if result is not None:
            result["outcomes"] = outcomes
        self._record(Record("test", time.perf_counter(), ok, asked, result or {}))
        failed = [t for t in asked if outcomes.get(t) != "passed"]
        return {"ok": ok, "passed": len(asked) - len(failed), "failed": failed}

    def _job(self, kind: str, args: list[str]) -> dict[str, Any] | None:
        """Run one job in a fresh trusted process; its JSON result, or None if it crashed."""
        with self.slots:
            fd, name = tempfile.mkstemp(dir=self.folder, suffix=".json")
            os.close(fd)
            out = Path(name)
            try:
                done = subprocess.run(
                    [sys.executable, "-I", "-B", str(JOB), kind, str(out), *args],
                    capture_output=True,
                    timeout=JOB_TIMEOUT_S,
                )
                if done.returncode != 0:
                    tail = done.stderr.decode(errors="replace")[-2000:]
                    print(f"job {kind} {args[-1]} failed:\n{tail}", file=sys.stderr)
                    return None
                result: dict[str, Any] = json.loads(out.read_text())
                return result
            except (subprocess.TimeoutExpired, ValueError) as e:
                print(f"job {kind} failed: {e}", file=sys.stderr)
                return None
            finally:
                out.unlink(missing_ok=True)

    def _record(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)


def _handler(runner: Runner) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/tests":
                self._reply(200, {"ok": True, "tests": runner.tests})
            else:
                self._reply(404, {"ok": False, "error": f"no such resource: {self.path}"})

        def do_POST(self) -> None:
            try:
                size = int(self.headers.get("content-length") or 0)
                if size > MAX_REQUEST:
                    raise BadRequest("request too large")
                body = json.loads(self.rfile.read(size) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                self._reply(200, runner.answer(self.path, body))
            except (BadRequest, TypeError, ValueError) as e:  # TypeError: a list where a name goes
                self._reply(400, {"ok": False, "error": str(e)})

        def _reply(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
