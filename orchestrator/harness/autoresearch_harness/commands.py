"""Commands the trusted side runs as the candidate, in its tree (`harness.run`, `harness.start`).

What they print is the candidate's text: handed back capped (the last MiB of each
stream), for the evaluator to parse, never to print as its own.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from .peer import Peer

OUTPUT_CAP = 1024 * 1024
"""Most bytes of a command's stdout (and of its stderr) handed back."""


def run(peer: Peer, r: dict[str, Any], workspace: str) -> dict[str, Any]:
    """The command to its end or its timeout: {returncode, timed_out, stdout, stderr}."""
    try:
        done = subprocess.run(
            _argv(r["command"]),
            cwd=workspace,
            env=_env(peer, r),
            capture_output=True,
            input=peer.decode(r.get("input")),
            timeout=r.get("timeout"),
            shell=isinstance(r["command"], str),
        )
    except subprocess.TimeoutExpired as e:
        return {
            "returncode": None,
            "timed_out": True,
            "stdout": _cap(e.stdout),
            "stderr": _cap(e.stderr),
        }
    return {"returncode": done.returncode, "timed_out": False, "stdout": _cap(done.stdout),
            "stderr": _cap(done.stderr)}  # fmt: skip


def start(peer: Peer, r: dict[str, Any], workspace: str) -> Any:
    """A long-running command (a service): its process, as the candidate holds it."""
    return subprocess.Popen(
        _argv(r["command"]),
        cwd=workspace,
        env=_env(peer, r),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        shell=isinstance(r["command"], str),
    )


def _argv(command: Any) -> Any:
    if isinstance(command, str) or (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    ):
        return command
    raise TypeError("a command is a string (run by sh) or a list of strings")


def _env(peer: Peer, r: dict[str, Any]) -> dict[str, str]:
    extra = peer.decode(r.get("env", {"$d": []}))
    return {**os.environ, **{str(k): str(v) for k, v in dict(extra).items()}}


def _cap(data: bytes | None) -> str:
    data = (data or b"")[-OUTPUT_CAP:]
    return data.decode("utf-8", errors="replace")
