"""The candidate's side: a small server the trusted side asks to import, call and run.

Started in the sandbox as the candidate's user (never the evaluator's), in the
candidate's tree, by the engine (`docker exec`), so it can touch nothing of the
trusted side: not its memory, its files, its clock or its output. Each trusted
process that imports a module of the implementation gets a session of its own:
a fresh process forked before any candidate code ran. Whatever candidate code
prints goes to this process's output: the candidate's log, never the metric
channel.

Everything here is the candidate's to change (its code runs in this process),
so nothing it answers is believed on the trusted side: this file only has to be
right for an honest candidate. Values the trusted side passes arrive as
capabilities (`Trusted` objects): calling, iterating or comparing one asks the
trusted side, which decides what it serves.

    python3 -u worker.py SOCKET_PATH
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys

if __package__:
    from . import wire
    from .candidate import CandidateSide
    from .clock import Clock
    from .peer import Gone, Peer
else:  # run as a script: `python3 -u /harness/autoresearch_harness/worker.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from autoresearch_harness import wire  # type: ignore[no-redef,import-not-found]
    from autoresearch_harness.candidate import CandidateSide  # type: ignore[no-redef,import-not-found]
    from autoresearch_harness.clock import Clock  # type: ignore[no-redef,import-not-found]
    from autoresearch_harness.peer import Gone, Peer  # type: ignore[no-redef,import-not-found]


def session(conn: socket.socket, workspace: str, trusted_root: str) -> None:
    """Serve one trusted process until it goes."""
    clock = Clock(float(os.environ.get("AUTORESEARCH_CALL_S", "0") or 0))
    spin = wire.spin_s(os.environ)
    peer = Peer(conn, CandidateSide(workspace, trusted_root, clock), spin_s=spin)
    with contextlib.suppress(Gone):
        peer.serve_forever()


def main(argv: list[str]) -> int:
    """Accept sessions on the socket at argv[1] until the sandbox ends."""
    path = argv[1]
    workspace = os.environ.get("AUTORESEARCH_WORKSPACE", os.getcwd())
    trusted_root = os.environ.get("AUTORESEARCH_TRUSTED_ROOT", "/trusted")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o111)  # the trusted side (another uid) must be able to connect
    try:
        server.bind(path + ".new")
    finally:
        os.umask(old)
    server.listen(16)
    os.rename(path + ".new", path)  # appears only once it listens
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            session(conn, workspace, trusted_root)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        conn.close()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
