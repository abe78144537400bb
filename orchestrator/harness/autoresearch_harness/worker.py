"""The candidate's side: a small server the trusted side asks to import, call and run.

Started in the sandbox as the candidate's user (never the evaluator's), in the
candidate's tree, by the engine (`docker exec`), so it can touch nothing of the
trusted side: not its memory, its files, its clock or its output. Each trusted
process that imports a module of the implementation gets a session of its own:
a fresh process forked before any candidate code ran. Whatever candidate code
prints goes to this process's output: the candidate's log, never the metric
channel.

    python3 -u worker.py SOCKET_PATH
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

if __package__:
    from . import wire
else:  # run as a script: `python3 -u /harness/autoresearch_harness/worker.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from autoresearch_harness import wire  # type: ignore[no-redef,import-not-found]

OUTPUT_CAP = 1024 * 1024
"""Most bytes of a command's stdout (and of its stderr) handed back."""


class Session:
    """One trusted process's view of the candidate: its modules and the objects it holds."""

    def __init__(self, sock: socket.socket, workspace: str, trusted_root: str) -> None:
        self.sock, self.workspace, self.trusted_root = sock, workspace, trusted_root
        self.objects: dict[int, Any] = {}
        self._next = 1

    def keep(self, obj: Any) -> int:
        n, self._next = self._next, self._next + 1
        self.objects[n] = obj
        return n

    def serve(self) -> None:
        reader = self.sock.makefile("rb")
        while True:
            try:
                request = wire.receive(reader)
            except (OSError, wire.WireError):
                return
            if request is None:
                return
            reply: dict[str, Any] = {"id": request.get("id")}
            try:
                reply["ok"] = wire.encode(self.handle(request), self.keep)
            except SystemExit as e:  # the candidate's exit ends its call, never the evaluator
                reply["error"] = {"type": "SystemExit", "message": str(e.code)}
            except BaseException as e:  # the candidate's failure is data for the trusted side
                traceback.print_exc()  # to the candidate's log
                reply["error"] = {"type": type(e).__name__, "message": str(e)[:10000]}
            try:
                wire.send(self.sock, reply)
            except wire.WireError as e:
                wire.send(
                    self.sock,
                    {"id": request.get("id"), "error": {"type": "WireError", "message": str(e)}},
                )

    def handle(self, r: dict[str, Any]) -> Any:
        op = r.get("op")
        for n in r.get("release", []):
            self.objects.pop(n, None)
        if op == "import":
            return self._import(str(r["name"]), list(r.get("path", [])))
        if op == "run":
            return self._run(r)
        if op == "start":
            return subprocess.Popen(
                _argv(r["command"]),
                cwd=self.workspace,
                env=_env(r),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                shell=isinstance(r["command"], str),
            )
        target = self.objects[int(r["target"])]
        args = [wire.decode(a, self.objects.__getitem__) for a in r.get("args", [])]
        kwargs = dict(wire.decode(r.get("kwargs", {"$d": []}), self.objects.__getitem__))
        return _OPS[str(op)](target, str(r.get("name", "")), args, kwargs)

    def _import(self, name: str, path: list[str]) -> Any:
        """Import `name` with the trusted process's search path, moved to the candidate's tree."""
        moved = []
        for entry in path:
            rel = os.path.relpath(os.path.abspath(entry), self.trusted_root)
            if not rel.startswith(".."):
                moved.append(os.path.normpath(os.path.join(self.workspace, rel)))
        for entry in reversed(moved):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        return importlib.import_module(name)

    def _run(self, r: dict[str, Any]) -> dict[str, Any]:
        timeout = r.get("timeout")
        try:
            done = subprocess.run(
                _argv(r["command"]),
                cwd=self.workspace,
                env=_env(r),
                capture_output=True,
                input=wire.decode(r.get("input")),
                timeout=timeout,
                shell=isinstance(r["command"], str),
            )
        except subprocess.TimeoutExpired as e:
            return {
                "returncode": None,
                "timed_out": True,
                "stdout": _cap(e.stdout),
                "stderr": _cap(e.stderr),
            }
        return {
            "returncode": done.returncode,
            "timed_out": False,
            "stdout": _cap(done.stdout),
            "stderr": _cap(done.stderr),
        }


def _argv(command: Any) -> Any:
    if isinstance(command, str) or (
        isinstance(command, list) and all(isinstance(a, str) for a in command)
    ):
        return command
    raise TypeError("a command is a string (run by sh) or a list of strings")


def _env(r: dict[str, Any]) -> dict[str, str]:
    extra = wire.decode(r.get("env", {"$d": []}))
    return {**os.environ, **{str(k): str(v) for k, v in dict(extra).items()}}


def _cap(data: bytes | None) -> str:
    data = (data or b"")[-OUTPUT_CAP:]
    return data.decode("utf-8", errors="replace")


def _call(target: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return target(*args, **kwargs)


def _getattr(target: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    value = getattr(target, name)
    return {"callable": callable(value) and not isinstance(value, type), "value": value}


def _setattr(target: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    setattr(target, name, args[0])


Op = Callable[[Any, str, list[Any], dict[str, Any]], Any]
_OPS: dict[str, Op] = {
    "call": _call,
    "getattr": _getattr,
    "setattr": _setattr,
    "delattr": lambda t, n, a, k: delattr(t, n),
    "getitem": lambda t, n, a, k: t[a[0]],
    "setitem": lambda t, n, a, k: t.__setitem__(a[0], a[1]),
    "delitem": lambda t, n, a, k: t.__delitem__(a[0]),
    "len": lambda t, n, a, k: len(t),
    "bool": lambda t, n, a, k: bool(t),
    "contains": lambda t, n, a, k: a[0] in t,
    "iter": lambda t, n, a, k: iter(t),
    "next": lambda t, n, a, k: _next(t),
    "enter": lambda t, n, a, k: t.__enter__(),
    "exit": lambda t, n, a, k: t.__exit__(None, None, None),
}


def _next(it: Any) -> dict[str, Any]:
    try:
        return {"value": next(it), "done": False}
    except StopIteration:
        return {"value": None, "done": True}


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
            Session(conn, workspace, trusted_root).serve()
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
