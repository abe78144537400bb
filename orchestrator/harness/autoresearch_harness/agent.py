"""The entry of the command agent's container: the LLM API on loopback, then the CLI.

    python3 -I /harness/autoresearch_harness/agent.py COMMAND

Starts the forwarder of the gateway's sockets (services.py) before the CLI runs, so
nothing else can answer on its port, points ANTHROPIC_BASE_URL at the `llm` service's
loopback URL (every AUTORESEARCH_SERVICE_<NAME>_URL is set too, for CLIs configured
otherwise), and runs COMMAND with sh in /workspace. The key is not here: the gateway
adds it on the host. Standard library only.
"""

from __future__ import annotations

import importlib
import os
import sys

HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: agent.py COMMAND", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if env.get("AUTORESEARCH_SERVICES"):
        sys.path.insert(0, HARNESS)  # -I: the script's folder is not on the path
        services = importlib.import_module("autoresearch_harness.services")
        urls: dict[str, str] = services.start(env)
        env.update(urls)
        llm = urls.get(services.url_variable("llm"))
        if llm:
            env["ANTHROPIC_BASE_URL"] = llm
    os.execve("/bin/sh", ["/bin/sh", "-c", argv[1]], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
