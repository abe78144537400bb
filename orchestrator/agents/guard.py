"""Runs one agent command and takes its whole process group down with the orchestrator.

`python guard.py COMMAND STDIN`: started by the command agent in a session of its own,
with a pipe on stdin that nothing writes to; the command's own stdin is the file STDIN
(the prompt, or /dev/null). When the orchestrator dies — even
by SIGKILL — the pipe's other end closes and the guard kills its process group:
the command, and everything the command started. No orphan CLI goes on
spending. Its exit status is the command's (128 + N when a signal N ended it).
"""

import os
import signal
import subprocess
import sys
import threading


def main() -> None:
    with open(sys.argv[2], "rb") as stdin:
        proc = subprocess.Popen(["/bin/sh", "-c", sys.argv[1]], stdin=stdin)

    def watch() -> None:
        while os.read(0, 4096):  # b"" at EOF: the orchestrator is gone
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    code = proc.wait()
    os._exit(128 - code if code < 0 else code)  # no shutdown: the watcher blocks in read()


if __name__ == "__main__":
    main()
