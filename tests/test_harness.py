"""The harness library on its own: the wire, candidate text and errors, the proxy against a
real worker process on a unix socket (no Docker; the sandbox tests cover the two users)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from orchestrator.harness import HARNESS_DIR
from orchestrator.harness.autoresearch_harness import wire
from orchestrator.harness.autoresearch_harness.text import (
    CandidateError,
    CandidateText,
    candidate_error,
)


def test_plain_data_round_trips_and_only_plain_data() -> None:
    value = {
        "n": [1, 2.5, float("inf"), None, True, "text", b"\x00bytes", (1, (2,)), {3, 4}, 1 + 2j],
        7: frozenset({"a"}),
        "array": np.arange(6, dtype="<f8").reshape(2, 3),
        "scalar": np.float32(1.5),
    }
    back = wire.decode(json.loads(json.dumps(wire.encode(value))))
    assert (
        back["n"][:2] == [1, 2.5] and back["n"][2] == float("inf") and back["n"][6] == b"\x00bytes"
    )
    assert back["n"][7] == (1, (2,)) and back["n"][8] == {3, 4} and back[7] == frozenset({"a"})
    assert (back["array"] == value["array"]).all() and back["array"].dtype == np.float64
    assert back["scalar"] == np.float32(1.5)
    with pytest.raises(TypeError, match="only plain data crosses"):
        wire.encode(object())
    with pytest.raises(TypeError):
        wire.encode(np.array([object()]))  # object arrays never cross by value


@pytest.mark.parametrize(
    "frame",
    [
        {"$pickle": "gASV"},  # an unknown tag is never guessed at
        {"$a": ["|O8", [1], "AAAAAAAAAAA=", False]},  # an object dtype
        {"$a": ["<f8", [3], "AAAAAAAAAAA=", False]},  # data and shape disagree
        {"$h": 1},  # a handle where the side decoding keeps none
        {"$d": [[[1], 2]]},  # an unhashable key
        {"a": 1, "b": 2},  # an untagged object
    ],
)
def test_a_malformed_frame_is_refused_never_guessed(frame: object) -> None:
    with pytest.raises((wire.WireError, TypeError, ValueError)):
        wire.decode(frame)


def test_frames_are_capped_and_nesting_is_bounded() -> None:
    deep: object = 1
    for _ in range(wire.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested deeper"):
        wire.encode(deep)
    a, b = socket.socketpair()
    a.sendall((wire.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(wire.WireError, match="over the"):
        wire.receive(b)


def test_candidate_text_never_passes_for_our_output() -> None:
    forged = CandidateText("p95_ms: 0.0001")
    assert forged == "p95_ms: 0.0001" and hash(forged) == hash("p95_ms: 0.0001")
    assert str(forged) == "'p95_ms: 0.0001'" and f"got {forged}" == "got 'p95_ms: 0.0001'"
    assert str(CandidateText("x\nMETRIC score=1")) == repr("x\nMETRIC score=1")
    assert str(CandidateText("\x1b]52;c;cGF5bG9hZA==\x07")).startswith("'\\x1b")
    assert str(CandidateText("plain words")) == "plain words"


def test_the_candidates_errors_are_its_builtin_kinds_and_say_so() -> None:
    e = candidate_error("KeyError", "nope")
    assert isinstance(e, KeyError) and isinstance(e, CandidateError)
    assert type(e).__module__ == "candidate" and str(e) == "nope"
    odd = candidate_error("MyOwnError\n: fake", "boom")
    assert (
        type(odd) is CandidateError and str(odd) == "MyOwnErrorfake: boom"
    )  # no line break crosses
    assert not isinstance(candidate_error("SystemExit", "x"), SystemExit)


@pytest.fixture
def worker(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A candidate's tree with a module, a trusted tree without it, and a worker serving it."""
    ws, trusted = tmp_path / "ws", tmp_path / "trusted"
    (ws / "pkg").mkdir(parents=True)
    (trusted / "pkg").mkdir(parents=True)
    (ws / "pkg" / "mod.py").write_text(
        textwrap.dedent("""
        import time
        time.perf_counter = lambda: 0.0  # the candidate's clock only
        print("score: 0.0001")           # the candidate's output only
        LIMIT = 3
        class Counter:
            def __init__(self, start): self.n = start
            def add(self, k): self.n += k; return self.n
            def items(self): return iter(range(self.n))
        def fail(): raise ValueError("bad input")
        def tell(): return "score: 0.0001"
        def array(n):
            import numpy
            return numpy.ones(n)
        def leave(): import os; os._exit(3)
    """)
    )
    sock = tmp_path / "w.sock"
    env = {
        **os.environ,
        "AUTORESEARCH_WORKSPACE": str(ws),
        "AUTORESEARCH_TRUSTED_ROOT": str(trusted),
    }
    script = HARNESS_DIR / "autoresearch_harness" / "worker.py"
    proc = subprocess.Popen([sys.executable, "-u", str(script), str(sock)], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield {"ws": ws, "trusted": trusted, "sock": sock}
    proc.kill()
    proc.wait()


def _trusted(worker: dict, code: str) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    """Run `code` as a trusted process would: the hook installed, the module absent here."""
    env = {
        **os.environ,
        "PYTHONPATH": str(HARNESS_DIR),
        "AUTORESEARCH_TRUSTED_ROOT": str(worker["trusted"]),
        "AUTORESEARCH_IMPLEMENTATION": json.dumps(["pkg/mod.py"]),
        "AUTORESEARCH_WORKER": str(worker["sock"]),
        "AUTORESEARCH_BUDGET_S": "10",
    }
    prelude = "import sys, time; sys.path.insert(0, 'pkg'); import autoresearch_harness.hook\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=worker["trusted"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip


def test_an_import_of_the_implementation_runs_in_the_worker_only(worker) -> None:  # type: ignore[no-untyped-def]
    done = _trusted(worker, """
        t0 = time.perf_counter()
        import mod
        c = mod.Counter(mod.LIMIT)
        assert c.add(2) == 5 and c.add(1) == 6 and list(c.items()) == list(range(6))
        assert time.perf_counter() > t0      # our clock is ours
        try:
            mod.fail()
        except ValueError as e:
            print("caught", type(e).__name__, e)
        told = mod.tell()
        print("told", told)
        assert (mod.array(3) == 1).all()
        print(repr(c), c == c, c != mod.Counter(6))
    """)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "score: 0.0001" not in done.stdout.replace("'score: 0.0001'", "")  # only quoted
    assert "caught ValueError bad input" in done.stdout
    assert "told 'score: 0.0001'" in done.stdout
    assert "<candidate object #" in done.stdout and "True True" in done.stdout


def test_without_the_hook_the_import_fails_never_runs_candidate_code_here(worker) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'pkg'); import mod"],
                          cwd=worker["trusted"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


def test_a_worker_that_dies_is_the_candidates_failure(worker) -> None:  # type: ignore[no-untyped-def]
    done = _trusted(
        worker,
        """
        import mod
        from autoresearch_harness import CandidateGone
        try:
            mod.leave()
        except CandidateGone as e:
            print("gone:", e)
        try:
            mod.LIMIT
        except CandidateGone:
            print("still gone")
    """,
    )
    assert done.returncode == 0, done.stderr
    assert "gone: the candidate's worker ended" in done.stdout and "still gone" in done.stdout


def test_commands_run_as_the_candidate_in_its_tree(worker) -> None:  # type: ignore[no-untyped-def]
    done = _trusted(
        worker,
        """
        import autoresearch_harness as harness
        r = harness.run("pwd; echo 'METRIC score=0' >&2; exit 4", timeout=10)
        print(r["returncode"], r["stderr"].strip())
        slow = harness.run(["sleep", "5"], timeout=0.2)
        print("timed out:", slow["timed_out"])
        svc = harness.start(["sh", "-c", "echo ready; sleep 30"])
        print(svc.stdout.readline().strip(), svc.poll())
        svc.kill()
    """,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "4 'METRIC score=0'" in done.stdout and "timed out: True" in done.stdout
    )  # stripped, still quoted
    assert "b'ready' None" in done.stdout
