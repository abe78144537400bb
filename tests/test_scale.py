"""A night of 1,000 experiments: results.tsv appended safely, a report that stays small,
and `report --serve` on loopback that serves nothing but the report's own files.

No Docker: the ledger is filled directly, as a night would leave it.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import results_tsv
from orchestrator.contract.load import build_contract
from orchestrator.contract.model import Contract
from orchestrator.ledger import Ledger
from orchestrator.morning.report import write_report
from orchestrator.morning.serve import Refresher, make_server
from orchestrator.sandbox import ContainerResult

EVIL = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def _contract() -> Contract:
    return build_contract(
        {"implementation": {"paths": ["impl.py"]}, "evaluator": {"command": "echo score: 1"},
         "metric": {"name": "score", "goal": "min"}},
        {}, "test",
    )  # fmt: skip


def _ledger(folder: Path, contract: Contract) -> Ledger:
    ledger = Ledger(folder)
    ledger.create_run("scale", "b" * 40, contract.model_dump_json(), "test", "hash")
    return ledger


def _experiment(ledger: Ledger, i: int, status: str = "discard", done: bool = True) -> None:
    ledger.begin(i, "b" * 40)
    ledger.frozen(i, f"{i:040x}", f"change {i} {EVIL}", f"because {i}", 10)
    result = ContainerResult(1 if status == "crash" else 0, False, False, 1.0, 2**30, 1.0, "")
    metric = None if status == "crash" else 10.0 - (i == 0) * 1.0
    ledger.decided(i, status=status, reason=f"reason {i} {EVIL}", metric=metric, result=result)
    if done:
        ledger.done(i, merged=False)


def _check_tsv(ledger: Ledger) -> list[str]:
    """The file: a header, then one whole, distinct row per finished experiment of the ledger."""
    text = (ledger.dir / "results.tsv").read_text()
    assert text.endswith("\n")
    rows = text.splitlines()[1:]
    assert all(len(r.split("\t")) == 5 for r in rows), rows  # nothing torn
    assert len(set(rows)) == len(rows)  # nothing doubled
    done = sorted(e.id for e in ledger.experiments() if e.phase == "done")
    assert sorted(int(r.split("\t")[4].split()[1]) for r in rows) == done
    return rows


def test_results_tsv_is_appended_and_a_torn_or_unknown_tail_is_cut(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, _contract())
    for i in range(3):
        _experiment(ledger, i, "keep" if i == 0 else "discard")
        ledger.write_results_tsv()
    _experiment(ledger, 3, done=False)  # decided, not done: its status may still change
    rows = _check_tsv(ledger)
    assert len(rows) == 3 and "\tkeep\t" in rows[0] and "<script>" in rows[1]  # plain text: a TSV
    whole = (tmp_path / "results.tsv").read_bytes()
    with (tmp_path / "results.tsv").open("ab") as f:  # what a kill can leave: a row the
        f.write(rows[2].encode() + b"\n" + b"0000003\t10.0")  # ledger never knew of, half a row
    ledger.done(3, merged=False)
    again = Ledger(tmp_path)  # resumed
    again.write_results_tsv()
    assert (tmp_path / "results.tsv").read_bytes().startswith(whole)
    assert len(_check_tsv(again)) == 4
    (tmp_path / "results.tsv").unlink()  # gone (or cut short): rebuilt whole, same order
    again.write_results_tsv()
    assert len(_check_tsv(again)) == 4


def test_results_tsv_after_a_kill_mid_append_has_no_torn_or_doubled_row(tmp_path: Path) -> None:
    """A writer SIGKILLed at random moments, then resumed: the file always matches the ledger."""
    _ledger(tmp_path, _contract()).close()
    writer = (
        "import sys, itertools\n"
        "from pathlib import Path\n"
        "from tests.test_scale import _experiment\n"
        "from orchestrator.ledger import Ledger\n"
        "ledger = Ledger(Path(sys.argv[1]))\n"
        "for i in itertools.count(ledger.next_id()):\n"
        "    _experiment(ledger, i)\n"
        "    ledger.write_results_tsv()\n"
    )
    rng = random.Random(7)
    root = Path(__file__).resolve().parents[1]
    for _round in range(6):
        proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)], cwd=root)
        time.sleep(rng.uniform(0.6, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ledger = Ledger(tmp_path)
        ledger.abandon(ledger.next_id() - 1)  # a row the kill left unfinished is not done
        ledger.write_results_tsv()  # what a resumed night does first
        rows = _check_tsv(ledger)
        ledger.close()
    assert len(rows) > 20


def _night(tmp_path: Path, n: int) -> tuple[Ledger, Contract]:
    contract = _contract()
    ledger = _ledger(tmp_path / "run", contract)
    kinds = ["discard", "discard", "crash", "refused", "duplicate"]
    for i in range(n):
        _experiment(ledger, i, "keep" if i == 0 else kinds[i % len(kinds)])
        folder = ledger.exp_dir(i)
        if i:
            (folder / "diff.patch").write_text(
                f"diff --git a/impl.py b/impl.py\n--- a/impl.py\n+++ b/impl.py\n@@ -1 +1 @@\n"
                f"-x = 1\n+x = {i}  # {EVIL}\n" + "+# padding\n" * 40
            )
        (folder / "output.log").write_text(f"Traceback ... {EVIL}\n" * 50)
    return ledger, contract


def test_the_report_of_1000_experiments_stays_small_and_links_its_diffs(tmp_path: Path) -> None:
    ledger, contract = _night(tmp_path, 1001)
    t0 = time.perf_counter()
    out = write_report(ledger, None, contract)  # type: ignore[arg-type]  # nothing merged: no diff
    took = time.perf_counter() - t0
    page = out.read_text()
    assert page.count("<tr class='exp ") == 1001
    assert len(page.encode()) < 1_500_000, len(page.encode())  # diffs are not inlined
    assert "+x = 7" not in page and "href='experiments/0007/diff.html'" in page
    assert "href='experiments/0002/log.html'" in page  # a crash's log tail, one click away
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page  # escaped as before
    assert "<select id='status-filter'>" in page and "<option value='crash'>" in page
    assert 'data-refresh="15"' in page  # live: the page reloads itself
    diff = (ledger.exp_dir(7) / "diff.html").read_text()
    assert "x = 7" in diff and "<script>alert" not in diff and "&lt;script&gt;" in diff
    log = (ledger.exp_dir(2) / "log.html").read_text()
    assert "Traceback" in log and "<script>alert" not in log
    assert took < 30, took
    before = (ledger.exp_dir(7) / "diff.html").stat().st_mtime_ns
    ledger.set_stopped("max experiments reached (1000)")
    page = write_report(ledger, None, contract).read_text()  # type: ignore[arg-type]
    assert (ledger.exp_dir(7) / "diff.html").stat().st_mtime_ns == before  # written once
    assert 'data-refresh="0"' in page


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Ledger]]:
    ledger, contract = _night(tmp_path, 4)
    refresher = Refresher(ledger, None, contract, min_interval_s=0)  # type: ignore[arg-type]
    server = make_server(refresher, port=0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ledger
    finally:
        server.shutdown()
        server.server_close()


def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def test_serve_gives_the_report_and_its_pages_on_loopback(served: tuple[int, Ledger]) -> None:
    port, ledger = served
    status, body, headers = _get(port, "/")
    assert status == 200 and b"status-filter" in body
    assert (
        headers["X-Content-Type-Options"] == "nosniff"
        and "default-src 'none'" in (headers["Content-Security-Policy"])
    )
    assert _get(port, "/progress.png")[1][:4] == b"\x89PNG"
    status, body, _h = _get(port, "/experiments/0001/diff.html")
    assert status == 200 and b"x = 1" in body and b"<script>alert" not in body
    _experiment(ledger, 4)  # the night goes on: the next read of the report shows it
    assert _get(port, "/report.html")[1].count(b"<tr class='exp ") == 5
    assert _get(port, "/", "POST")[0] == 501  # read-only


@pytest.mark.parametrize(
    "path",
    ["/../ledger.sqlite", "/%2e%2e/ledger.sqlite", "/..%2fledger.sqlite", "/%2e%2e%2fledger.sqlite",
     "/%252e%252e/ledger.sqlite", "/experiments/0001/../../ledger.sqlite",
     "/experiments/0001/..%2f..%2fledger.sqlite", "/experiments/0001%2fdiff.html", "/ledger.sqlite",
     "/results.tsv", "/experiments/0001/diff.patch", "/experiments/0001/output.log",
     "/experiments/../ledger.sqlite", "//etc/passwd", "/etc/passwd", "/report.html/../ledger.sqlite",
     "/experiments/0001/diff.html%00", "/./report.html", "/REPORT.HTML"],
)  # fmt: skip
def test_serve_refuses_anything_but_the_reports_files(
    served: tuple[int, Ledger], path: str
) -> None:
    port, _ledger = served
    status, body, _h = _get(port, path)
    assert status == 404 and b"SQLite" not in body and b"score" not in body


def test_report_serve_is_a_cli_option() -> None:
    out = subprocess.run([sys.executable, "-m", "orchestrator", "report", "--help"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "--serve" in out and "--port" in out and "127.0.0.1" in out


def test_the_ledgers_rows_stay_right_when_read_incrementally(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, _contract())
    other = Ledger(tmp_path)  # another process's reader, kept open all night
    _experiment(ledger, 0, "keep")
    _experiment(ledger, 1, done=False)
    assert [(e.id, e.phase) for e in other.experiments()] == [(0, "done"), (1, "decided")]
    ledger.done(1, merged=False)
    ledger.begin(2, "p")
    assert [(e.id, e.phase) for e in other.experiments()] == [
        (0, "done"), (1, "done"), (2, "proposing")]  # fmt: skip
    ledger.abandon(2)
    assert [e.id for e in other.experiments()] == [0, 1]
    assert json.loads(json.dumps([e.id for e in ledger.experiments()])) == [0, 1]
    assert results_tsv.NAME == "results.tsv"


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    import socket

    from orchestrator.errors import UserError
    from orchestrator.morning.serve import serve

    ledger, contract = _night(tmp_path, 2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(ledger, None, contract, port, say=lambda _m: None)  # type: ignore[arg-type]
