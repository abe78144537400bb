"""The morning report and `report --serve` against untrusted text and other web pages.

A page whose name an attacker points at 127.0.0.1 (DNS rebinding) must not read the
report's diffs and logs from the operator's browser; an inline script the escaping
let through must not run; a kept change whose description holds `$$` must not stop
the report being drawn; and a report that cannot be written is said, recorded and
ends the night's command with its own status — never a silently missing or stale
page. Each attack failed before its fix.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.morning.report import write_report
from orchestrator.morning.serve import Refresher, make_server
from orchestrator.night import Backoff
from orchestrator.night.driver import Night
from orchestrator.runs import start_run
from orchestrator.terminal import REPORT_FAILED, Terminal
from tests.conftest import BENCH, IMPL, contract_for, make_patch, make_repo

DESCRIPTION = r"01-costs $$ less than $x^{2$ \frac{1}{0}"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory, sandbox) -> Night:  # type: ignore[no-untyped-def]
    """A real night whose one kept, merged change has a description that is not mathtext."""
    root = tmp_path_factory.mktemp("report")
    repo = make_repo(root / "repo", {"impl.py": IMPL, "bench.py": BENCH})
    make_patch(
        root / "patches", f"{DESCRIPTION}.patch", "impl.py", IMPL, IMPL.replace("10.0", "4.0")
    )
    run = start_run(repo, "r", contract_for(root / "patches"), "test", sandbox,
                    say=lambda _m: None, backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    kept = run.ledger.get(1)
    assert kept is not None and kept.status == "keep" and kept.description == DESCRIPTION
    return run


@pytest.fixture
def served(night: Night) -> Iterator[tuple[ThreadingHTTPServer, list[str]]]:
    said: list[str] = []
    refresher = Refresher(night.ledger, night.ws, night.contract, min_interval_s=0)
    server = make_server(refresher, 0, said.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, said
    finally:
        server.shutdown()
        server.server_close()


def _get(server: ThreadingHTTPServer, path: str, host: str | None) -> tuple[int, dict, bytes]:  # type: ignore[type-arg]
    """A GET with exactly this Host header (None: none at all), as a browser or a script sends it."""
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        head = f"GET {path} HTTP/1.0\r\n" + (f"Host: {host}\r\n" if host is not None else "")
        s.sendall((head + "\r\n").encode())
        response = http.client.HTTPResponse(s)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def test_a_description_holding_dollars_is_drawn_as_text(night: Night) -> None:
    out = write_report(night.ledger, night.ws, night.contract)
    assert (night.run_dir / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "costs $$ less than" in out.read_text()  # the row, escaped text


def test_only_a_loopback_name_is_answered(served: tuple[ThreadingHTTPServer, list[str]]) -> None:
    """DNS rebinding: the attacker's page is same-origin with its own name, now 127.0.0.1."""
    server, _said = served
    port = server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST:9000"):
        status, _h, body = _get(server, "/experiments/0001/diff.html", host)
        assert status == 200 and b"4.0" in body, host
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}",
                 f"localhost.attacker.example:{port}", "", None):  # fmt: skip
        for path in ("/", "/experiments/0001/diff.html", "/progress.png"):
            status, _h, body = _get(server, path, host)
            assert status == 421 and b"4.0" not in body and b"PNG" not in body, (host, path)


def test_the_pages_one_script_runs_by_its_hash_and_no_other(
    served: tuple[ThreadingHTTPServer, list[str]],
) -> None:
    server, _said = served
    status, headers, body = _get(server, "/", f"127.0.0.1:{server.server_address[1]}")
    assert status == 200
    scripts = re.findall(rb"<script>(.*?)</script>", body, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0]).digest()).decode()
    policy = dict(d.strip().split(" ", 1) for d in headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == f"'sha256-{digest}'"  # no 'unsafe-inline'


def test_a_report_that_cannot_be_rewritten_is_a_500_not_a_stale_page(
    night: Night, served: tuple[ThreadingHTTPServer, list[str]]
) -> None:
    server, said = served
    write_report(night.ledger, night.ws, night.contract)  # the last good one
    blocker = night.run_dir / "progress.png"
    blocker.unlink()
    blocker.mkdir()  # the next rewrite fails: a directory where its plot goes
    (blocker / "x").write_text("")
    try:
        status, _h, body = _get(server, "/", f"localhost:{server.server_address[1]}")
    finally:
        (blocker / "x").unlink()
        blocker.rmdir()
    assert status == 500 and b"could not be rewritten" in body and b"<script>" not in body
    assert len(said) == 1 and said[0].startswith("error: the report could not be rewritten")


def test_a_night_whose_report_fails_says_so_records_it_and_ends_non_zero(
    tmp_path: Path, sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL, "bench.py": BENCH})
    contract = contract_for(tmp_path, agent={"kind": "none"})
    run = start_run(repo, "f", contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    (run.run_dir / "progress.png" / "x").mkdir(parents=True)  # the report cannot be written
    with pytest.raises(SystemExit) as ended:
        Terminal().night(lambda: run, "f")
    assert ended.value.code == REPORT_FAILED
    err = capsys.readouterr().err
    assert "error: the morning report could not be written (IsADirectoryError" in err, err
    assert "no report (see the error above)" in err
    (event,) = run.ledger.events("report-failed")
    assert event["detail"].startswith("IsADirectoryError")
    assert run.ledger.get(0) is not None and run.ledger.get(0).metric == 10.0  # the night ran
