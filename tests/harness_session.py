"""A harness session without Docker: a candidate's worker on a unix socket, trusted code beside it.

The two sides run as two processes of this user (the sandbox tests cover the two
users and the container); what is tested here is what crosses and what does not.
The implementation's files are in both trees, as in a sandbox: the trusted tree
holds them as data, the worker imports them from its own copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from orchestrator.harness import HARNESS_DIR


class Session:
    def __init__(self, tmp: Path, files: dict[str, str], trusted_only: dict[str, str] | None = None,
                 call_s: float = 20, added: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.tmp, self.call_s, self.added = tmp, call_s, added
        self.ws, self.trusted = tmp / "ws", tmp / "trusted"
        for tree in (self.ws, self.trusted):
            for rel, text in files.items():
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                (tree / rel).write_text(textwrap.dedent(text))
        for rel, text in (trusted_only or {}).items():
            (self.trusted / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.trusted / rel).write_text(textwrap.dedent(text))
        self.files = sorted(files)
        self.sock = tmp / "w.sock"
        self.log = tmp / "candidate.log"
        self.worker: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.sock.unlink(missing_ok=True)
        env = {**os.environ, "AUTORESEARCH_WORKSPACE": str(self.ws),
               "AUTORESEARCH_TRUSTED_ROOT": str(self.trusted), "AUTORESEARCH_CALL_S": f"{self.call_s:g}"}  # fmt: skip
        script = HARNESS_DIR / "autoresearch_harness" / "worker.py"
        with open(self.log, "ab") as log:
            self.worker = subprocess.Popen([sys.executable, "-u", str(script), str(self.sock)],
                                           cwd=self.ws, env=env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(HARNESS_DIR),
            "AUTORESEARCH_TRUSTED_ROOT": str(self.trusted),
            "AUTORESEARCH_IMPLEMENTATION": json.dumps(self.files),
            "AUTORESEARCH_ADDED": json.dumps(list(self.added)),
            "AUTORESEARCH_WORKER": str(self.sock),
            "AUTORESEARCH_BUDGET_S": "10",
            "AUTORESEARCH_CALL_S": f"{self.call_s:g}",
            "AUTORESEARCH_CANDIDATE_UID": str(
                os.getuid() + 1
            ),  # the hook: "not the candidate's uid"
        }

    def run(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Trusted code, as an evaluator runs: the hook installed first, the tree's root first."""
        prelude = "import autoresearch_harness.hook\n"
        return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                              cwd=self.trusted, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def pytest(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The harness's own judge (`python -m autoresearch_harness.suite`) on the trusted tree."""
        return subprocess.run([sys.executable, "-c", "import autoresearch_harness.hook, runpy, sys; "
                               "sys.argv[0] = 'suite'; runpy.run_module('autoresearch_harness.suite', "
                               "run_name='__main__')", *args],
                              cwd=self.trusted, env=self.env(), capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def close(self) -> None:
        """The worker and every session it forked (a sandbox's end does this in a container)."""
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()

    def candidate_log(self) -> str:
        return self.log.read_text(errors="replace")


def metrics(text: str) -> dict[str, float]:
    from orchestrator.contract.metrics import parse_metrics

    return parse_metrics(text)
