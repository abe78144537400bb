"""The harness library on its own: the wire, candidate text and errors, the proxy against a
real worker process on a unix socket (no Docker; the sandbox tests cover the two users)."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from argparse import Namespace
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from orchestrator.harness.autoresearch_harness import values, wire
from orchestrator.harness.autoresearch_harness.peer import Peer
from orchestrator.harness.autoresearch_harness.text import (
    CandidateError,
    CandidateText,
    candidate_error,
)
from tests.harness_session import Session, metrics


def test_plain_data_round_trips_and_only_plain_data() -> None:
    value = {
        "n": [1, 2.5, float("inf"), None, True, "text", b"\x00bytes", (1, (2,)), {3, 4}, 1 + 2j],
        7: frozenset({"a"}),
        "array": np.arange(6, dtype="<f8").reshape(2, 3),
        "scalar": np.float32(1.5),
    }
    more = [range(1, 9, 2), slice(1, None, 2), bytearray(b"ab"), ..., Decimal("1.10"), Fraction(1, 3),
            datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), date(2020, 1, 2), timedelta(seconds=5),
            OrderedDict(a=1), Counter("aab"), deque([1, 2], maxlen=3), defaultdict(list, a=[1]),
            10**5000, Namespace(a=1)]  # fmt: skip
    assert values.decode(json.loads(json.dumps(values.encode(more)))) == more
    back = values.decode(json.loads(json.dumps(values.encode(value))))
    assert (
        back["n"][:2] == [1, 2.5] and back["n"][2] == float("inf") and back["n"][6] == b"\x00bytes"
    )
    assert back["n"][7] == (1, (2,)) and back["n"][8] == {3, 4} and back[7] == frozenset({"a"})
    assert (back["array"] == value["array"]).all() and back["array"].dtype == np.float64
    assert back["scalar"] == np.float32(1.5)
    flat = [[1, 2.5, True, None, "a"], (1, 2**2000), (2**1100, -(2**1100)), [-0.0, 1e308], ("b",)]
    assert values.decode(json.loads(json.dumps(values.encode(flat)))) == flat  # C loops or tags
    nan = values.decode(json.loads(json.dumps(values.encode([float("nan"), float("-inf")]))))
    assert math.isnan(nan[0]) and nan[1] == float("-inf")
    texts = values.decode(
        json.loads(json.dumps(values.encode([["a", "b"], ("c", 1)]))), text=CandidateText
    )
    assert [type(x) for x in (*texts[0], *texts[1])] == [
        CandidateText,
        CandidateText,
        CandidateText,
        int,
    ]
    with pytest.raises(TypeError, match="only plain data crosses"):
        values.encode(object())
    with pytest.raises(TypeError):
        values.encode(np.array([object()]))  # object arrays never cross by value


@pytest.mark.parametrize(
    "frame",
    [
        {"$pickle": "gASV"},  # an unknown tag is never guessed at
        {"$a": ["|O8", [1], "AAAAAAAAAAA=", False]},  # an object dtype
        {"$a": ["<f8", [3], "AAAAAAAAAAA=", False]},  # data and shape disagree
        {"$m": [1, 2, None]},  # a reference where the side decoding keeps none
        {"$g": "os:system"},  # a global by name, with nobody to resolve it
        {"$i": "zz"},  # a large int that is not hex
        {"$d": [[[1], 2]]},  # an unhashable key
        {"a": 1, "b": 2},  # an untagged object
    ],
)
def test_a_malformed_frame_is_refused_never_guessed(frame: object) -> None:
    with pytest.raises((wire.WireError, TypeError, ValueError)):
        values.decode(frame)


def test_frames_are_capped_and_nesting_is_bounded() -> None:
    deep: object = 1
    for _ in range(values.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(wire.WireError, match="nested deeper"):
        values.encode(deep)
    a, b = socket.socketpair()
    a.sendall((wire.MAX_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(wire.WireError, match="over the"):
        wire.receive(b)


def test_a_read_polls_only_while_answers_are_quick_and_loses_no_frame() -> None:
    """A read polls `spin_s` before it blocks; after a slow answer the next read blocks at once
    (no CPU burnt on a wait polling cannot shorten), and a quick answer brings polling back.
    Every frame arrives whole whichever way it was read, and a close is still a close."""
    import threading
    import time

    a, b = socket.socketpair()
    reader = wire.Reader(b, spin_s=0.5)
    late = [2.0, 2.0, 0.0]  # slow: past three polls' worth
    read = [threading.Event() for _ in late]

    def send() -> None:
        for i, pause in enumerate(late):
            if i:
                read[i - 1].wait(30)  # the previous frame is read: this one needs a read of its own
            time.sleep(pause)
            wire.send(a, {"n": i, "pad": "x" * 100_000})
        a.close()

    threading.Thread(target=send, daemon=True).start()
    used = []
    for i in range(3):
        cpu = time.thread_time()
        assert reader.frame() == {"n": i, "pad": "x" * 100_000}
        used.append(time.thread_time() - cpu)
        read[i].set()
    assert used[0] > 0.1, used  # it polled (0.5 s of wall time) before it blocked
    assert used[1] < 0.05, used  # the first answer was slow: this one blocked from the start
    assert reader._spin  # the third came at once: polling is back
    assert reader.frame() is None


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


PKG = {
    "pkg/__init__.py": "",
    "pkg/mod.py": """
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
    """,
}


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path, PKG)
    yield s
    s.close()


def test_an_import_of_the_implementation_runs_in_the_worker_only(session: Session) -> None:
    done = session.run("""
        import time
        t0 = time.perf_counter()
        from pkg import mod
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
        print(repr(c).startswith("<pkg.mod.Counter object at"), c == c, c != mod.Counter(6))
    """)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "score: 0.0001" not in done.stdout.replace("'score: 0.0001'", "")  # only quoted
    assert "caught ValueError bad input" in done.stdout
    assert "told 'score: 0.0001'" in done.stdout
    assert "True True True" in done.stdout
    assert "score: 0.0001" in session.candidate_log()


def test_without_the_hook_an_import_meets_the_trap_never_runs_candidate_code(
    tmp_path: Path,
) -> None:
    """A Python started without the hook (-I, -s, -S, a venv) finds the boot's bytecode trap."""
    from orchestrator.executors.isolation import trap_folders
    from orchestrator.harness.autoresearch_harness import boot

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("open('ran', 'w').write('candidate code ran')\n")
    files = ["pkg/mod.py"]
    for folder in trap_folders(files):
        (tmp_path / folder).mkdir()
    boot._traps(
        {
            "AUTORESEARCH_TRUSTED_ROOT": str(tmp_path),
            "AUTORESEARCH_IMPLEMENTATION": json.dumps(files),
        }
    )
    for flags in (["-s"], ["-S"], ["-I"], []):
        done = subprocess.run([sys.executable, *flags, "-c", "import sys; sys.path.insert(0, ''); import pkg.mod"],
                              cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
        assert done.returncode != 0 and "the implementation's" in done.stderr, (flags, done.stderr)
    assert not (tmp_path / "ran").exists()
    assert "open('ran'" in (tmp_path / "pkg" / "mod.py").read_text()  # still readable, as data


def test_a_worker_that_dies_is_the_candidates_failure(session: Session) -> None:
    done = session.run("""
        from pkg import mod
        from autoresearch_harness import CandidateGone
        try:
            mod.leave()
        except CandidateGone as e:
            print("gone:", e)
        try:
            mod.tell()
        except CandidateGone:
            print("still gone")
    """)
    assert done.returncode == 0, done.stderr
    assert "gone: the other side ended the session" in done.stdout and "still gone" in done.stdout


def test_commands_run_as_the_candidate_in_its_tree(session: Session) -> None:
    done = session.run("""
        import autoresearch_harness as harness
        r = harness.run("pwd; echo 'METRIC score=0' >&2; exit 4", timeout=10)
        print(r["returncode"], r["stderr"].strip())
        slow = harness.run(["sleep", "5"], timeout=0.2)
        print("timed out:", slow["timed_out"])
        svc = harness.start(["sh", "-c", "echo ready; sleep 30"])
        print(svc.stdout.readline().strip(), svc.poll())
        svc.kill()
    """)
    assert done.returncode == 0, done.stderr
    assert (
        "4 'METRIC score=0'" in done.stdout and "timed out: True" in done.stdout
    )  # stripped, quoted
    assert "b'ready' None" in done.stdout


def test_the_judge_counts_the_suite_from_pytests_reports_and_prints_last(tmp_path: Path) -> None:
    judge = {
        "tests/test_it.py": """
        from pkg import mod
        def test_limit(): assert mod.LIMIT == 3
        def test_broken(): assert mod.tell() == "no"
        def test_skip():
            import pytest
            pytest.skip("not today")
    """
    }
    s = Session(tmp_path, PKG, judge)
    try:
        done = s.pytest("--size", "pkg/mod.py", "tests")
        found = metrics(done.stdout)
        assert found["tests_total"] == 3 and found["tests_passed"] == 1
        assert found["tests_failed"] == 1 and found["tests_skipped"] == 1
        source = (s.trusted / "pkg" / "mod.py").read_text().splitlines()
        assert found["lines"] == sum(
            1 for line in source if line.strip() and not line.strip().startswith("#")
        )
        tail = done.stdout.strip().splitlines()[-6:]
        assert [line.split(":")[0] for line in tail] == [
            "tests_total", "tests_passed", "tests_failed", "tests_skipped", "tests_s", "lines"]  # fmt: skip
    finally:
        s.close()


class _SlowSide:
    """A session side that serves every request with "served" and takes in a frame marked
    `slow` slowly (as a large preamble or synced container is)."""

    def refer(self, peer: Peer, value: object) -> object:
        raise TypeError

    def resolve(self, peer: Peer, tag: str, body: object) -> object:
        raise wire.WireError("no references here")

    def serve(self, peer: Peer, request: dict[str, object]) -> object:
        return "served"

    def error(self, peer: Peer, exc: BaseException) -> dict[str, object]:
        return {"m": repr(exc)}

    def failed(self, peer: Peer, error: object) -> BaseException:
        return RuntimeError(error)

    def preamble(self, peer: Peer) -> None:
        return None

    def absorb(self, peer: Peer, frame: dict[str, object]) -> None:
        if frame.get("slow"):
            time.sleep(0.3)


def test_a_frame_for_a_waiting_thread_is_filed_before_anyone_reads_again() -> None:
    """Two threads wait on one session; the reader takes in a request nested in the other's call
    slowly. The other thread must not start reading meanwhile (it would block in recv with its
    own request unserved in its box, and the session would hang)."""
    mine, theirs = socket.socketpair()
    peer = Peer(mine, _SlowSide())  # type: ignore[arg-type]
    answers: dict[str, object] = {}

    def call(op: str) -> None:
        answers[op] = peer.request(op)

    first = threading.Thread(target=call, args=("one",), daemon=True)
    first.start()
    time.sleep(0.1)  # "one" reads; "two" parks
    second = threading.Thread(target=call, args=("two",), daemon=True)
    second.start()
    reader = wire.Reader(theirs)
    ids = {m["op"]: m["id"] for m in (reader.frame(), reader.frame()) if m is not None}
    theirs.sendall(wire.dumps({"id": 100, "op": "nested", "on": ids["two"], "slow": True}))
    theirs.settimeout(10)
    assert reader.frame() == {"re": 100, "ok": "served"}  # a hang is a timeout here
    for op in ("one", "two"):
        theirs.sendall(wire.dumps({"re": ids[op], "ok": op}))
    first.join(10)
    second.join(10)
    assert answers == {"one": "one", "two": "two"}
