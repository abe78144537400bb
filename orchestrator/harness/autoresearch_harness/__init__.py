"""autoresearch_harness: what a trusted evaluator uses to reach the candidate (stdlib only).

In a harness-mode sandbox the evaluator is trusted and the candidate's code runs
elsewhere: in a worker of another user, in the candidate's own copy of the tree.
Importing a module of the implementation already goes there (see `hook.py`);
this module adds what an evaluator needs besides:

    import autoresearch_harness as harness

    rng = harness.rng()                       # fresh inputs from a seed the candidate never sees
    done = harness.run(["python", "train.py"], timeout=300)   # a command, as the candidate
    service = harness.start(["python", "serve.py"])           # a service, reached over loopback
    text = harness.source("src/model.py")     # what would merge, as data (never imported)
    url = harness.service("llm")              # a contract's service: http://127.0.0.1:PORT
    with harness.window() as used:            # the candidate's CPU and memory, from the kernel
        ...
    print(f"cpu_ms: {used.cpu_s * 1000:.3f}") # only what the evaluator prints is a metric

Whatever comes back from the candidate is data: strings are `CandidateText`
(printed quoted when they could pass for a metric line), errors it raised are
`CandidateError`s. Never print candidate output as your own lines.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any

from .text import CandidateError, CandidateGone, CandidateText

if TYPE_CHECKING:
    from .measure import Figures, window

__all__ = [
    "CandidateError",
    "CandidateGone",
    "CandidateText",
    "Figures",
    "rng",
    "run",
    "seed",
    "service",
    "source",
    "start",
    "window",
]


def __getattr__(name: str) -> Any:
    """`window` and `Figures` load when first used: the hook imports this package in every
    trusted Python, and most never measure."""
    if name in ("window", "Figures"):
        from . import measure

        return getattr(measure, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def seed() -> int:
    """This run's seed: drawn fresh by the trusted side for every run; the candidate never sees it."""
    path = os.environ.get("AUTORESEARCH_SEED_FILE")
    if path:  # harness mode: a file only the evaluator's user can read
        with open(path) as f:
            return int(f.read())
    value = os.environ.get("AUTORESEARCH_SEED")  # shared mode
    if value is None:
        raise RuntimeError("no seed: not inside an autoresearch sandbox")
    return int(value)


def rng() -> random.Random:
    """A random generator seeded with `seed()`: draw the run's inputs from it."""
    return random.Random(seed())


def service(name: str) -> str:
    """The loopback base URL of the contract's service `name` (`[[sandbox.services]]`): the
    host's gateway behind it adds the key, so give a client any placeholder key."""
    from .services import url_variable

    url = os.environ.get(url_variable(name))
    if not url:
        raise RuntimeError(f"no service {name!r}: the contract's sandbox.services does not name it")
    return url


def source(path: str) -> CandidateText:
    """The text of an implementation file as it would merge (the frozen commit's, read here;
    never from the candidate's process, which could answer anything). Data, never imported.
    In harness mode the file is also at its own path under the trusted root, as data."""
    root = os.environ.get("AUTORESEARCH_TRUSTED_ROOT") or os.getcwd()
    full = os.path.normpath(os.path.join(root, path))
    if not full.startswith(root.rstrip("/") + "/"):
        raise ValueError(f"{path!r} is not a repo-relative path")
    with open(full, encoding="utf-8", errors="replace") as f:
        return CandidateText(f.read())


def run(
    command: str | list[str],
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> dict[str, Any]:
    """Run a command as the candidate, in its tree; {returncode, stdout, stderr, timed_out}.

    stdout and stderr are the candidate's text (the last MiB of each): parse them,
    never print them as your own lines.
    """
    if not os.environ.get("AUTORESEARCH_WORKER"):  # shared mode: here, as ourselves
        return _run_here(command, timeout=timeout, env=env, input=input)
    from .session import connection, request

    peer = connection()
    result: dict[str, Any] = request(
        "run",
        command=command,
        timeout=timeout,
        env=peer.encode(env or {}),
        input=None if input is None else peer.encode(input),
    )
    return result


def start(command: str | list[str], *, env: dict[str, str] | None = None) -> Any:
    """Start a long-running command (a service) as the candidate, in its tree.

    Returns its process as the candidate holds it: `.poll()`, `.kill()`, `.wait(t)`,
    `.stdout.readline()`. Reach a service it starts over loopback (127.0.0.1).
    """
    if not os.environ.get("AUTORESEARCH_WORKER"):  # shared mode: here, as ourselves
        import subprocess

        return subprocess.Popen(
            command,
            shell=isinstance(command, str),
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    from .session import connection, request

    return request("start", command=command, env=connection().encode(env or {}))


def _run_here(
    command: str | list[str],
    *,
    timeout: float | None,
    env: dict[str, str] | None,
    input: bytes | None,
) -> dict[str, Any]:
    import subprocess

    try:
        done = subprocess.run(
            command,
            shell=isinstance(command, str),
            env={**os.environ, **(env or {})},
            capture_output=True,
            timeout=timeout,
            input=input,
        )
    except subprocess.TimeoutExpired as e:
        out, err, code, late = e.stdout, e.stderr, None, True
    else:
        out, err, code, late = done.stdout, done.stderr, done.returncode, False
    text = [
        CandidateText((b or b"")[-1024 * 1024 :].decode("utf-8", errors="replace"))
        for b in (out, err)
    ]
    return {"returncode": code, "timed_out": late, "stdout": text[0], "stderr": text[1]}
