"""A coding-agent CLI in a container of its own: where the command agent runs it by default.

The container is made like an experiment's (sandbox/docker.py: non-root, every
capability dropped, no-new-privileges, network none, read-only root with a sized
tmpfs, pids/memory/CPU limits, AIO refused, killed with SIGKILL at `timeout_s`,
always removed, labelled with its owner so a killed orchestrator's is reaped at
the next start). It holds only the proposer's copy (/workspace, read-write, on a
capped filesystem: copy.py), the prompt and history (/agent, read-only) and the
harness library (/harness, read-only). Its only ways out are the agent's services
(services.py), each served by a gateway of its own on the host, which adds the key;
inside, the harness's forwarder exposes each on loopback. With no service there is
no gateway and no key. The key never enters the container. The prompt reaches the
CLI on its stdin (a file, so no size limit applies) unless the command names
`{prompt_file}`.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import harness
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.services import PLACEHOLDER_KEYS, container_env, gateway_view, prelude
from orchestrator.contract.model import Sandbox
from orchestrator.errors import ImageAbsent, UserError
from orchestrator.gateway.server import check_environment, serving
from orchestrator.sandbox import ContainerResult, ContainerSpec, Mount
from orchestrator.sandbox.disk import Workdir
from orchestrator.sandbox.seccomp import default_profile

if TYPE_CHECKING:
    from orchestrator.sandbox.docker import DockerSandbox

AGENT_IMAGE = "autoresearch/agent:latest"
"""The image `autoresearch images build agent` (or `make agent-image`) makes: built on first use."""
PLACEHOLDER_KEY = PLACEHOLDER_KEYS["anthropic"][1]
"""What Claude Code sees as its key: it needs one to start; the gateway drops it, adds the host's."""
HARNESS = "/harness"
INBOX = "/agent"
"""Where the prompt and history files are inside (read-only)."""
ROLE_LABEL = "autoresearch.role"
LINGER_S = 0.5
"""How long the container outlives a command that failed: its cgroup (the forks refused, which
explain a failure) is read by then. A command that succeeded ends its container at once."""


@dataclass(frozen=True)
class Outcome:
    """What one command did in its container, as the host measured it."""

    result: ContainerResult
    figures: dict[str, float]
    """The gateway's `gateway.<name>.<figure>` (empty without services)."""


def sandbox_of(cfg: CommandAgentConfig) -> Sandbox:
    """The container's limits; its user is ours when we are not root (it writes our copy)."""
    uid = os.getuid()
    user = f"{uid}:{os.getgid()}" if uid != 0 else "10001:10001"
    return Sandbox(
        image=cfg.image,
        cpus=cfg.cpus,
        memory=cfg.memory,
        pids=cfg.pids,
        tmpfs=cfg.tmpfs,
        runtime=cfg.runtime,
        user=user,
        log_bytes=1024**2,
    )


def _give(folder: Path, user: str) -> None:
    """Root on the host: the copy becomes the container user's, so the CLI can edit it."""
    if os.getuid() != 0:
        return
    uid, gid = (int(x) for x in user.split(":"))
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)
    os.chown(folder, uid, gid)


class AgentContainer:
    """Runs agent commands in containers; `cancel()` kills every one in flight."""

    def __init__(self, cfg: CommandAgentConfig, say: Callable[[str], None] = print) -> None:
        from orchestrator.sandbox.docker import DockerSandbox, connect

        self.cfg, self.say = cfg, say
        self.services = cfg.ways_out()
        check_environment(self.services)  # a key is the setup's: a UserError up front
        self.client = connect()
        self._sandbox = DockerSandbox
        self._live: set[DockerSandbox] = set()
        self._lock = threading.Lock()
        self._image_lock = threading.Lock()
        self._image_ready = False
        if cfg.image != AGENT_IMAGE:  # refused before the run is made; the default is built
            self._ensure_image()

    def cancel(self) -> None:
        """Kill every container in flight. Each run has a sandbox of its own, never reopened:
        one created before the cancel and started after it is killed as it starts."""
        with self._lock:
            live = list(self._live)
        for sandbox in live:
            sandbox.cancel()

    def _ensure_image(self) -> None:
        """The default image is built the first time it is needed; any other must exist."""
        with self._image_lock:
            if self._image_ready:
                return
            try:
                self._sandbox(self.client).image_id(self.cfg.image)
            except ImageAbsent:
                if self.cfg.image != AGENT_IMAGE:
                    raise UserError(
                        f"agent.image {self.cfg.image} is not present — build it, or leave "
                        f"agent.image unset for {AGENT_IMAGE}"
                    ) from None
                from orchestrator.sandbox import images

                self.say(f"building {AGENT_IMAGE} once (`make agent-image` builds it ahead)")
                images.build(self.client, "agent", say=self.say)
            self._image_ready = True

    def run(
        self, command: str, copy: Workdir, inbox: Path, env: dict[str, str], stdin: str
    ) -> Outcome:
        """Run `command` on the copy with the files of `inbox` and `stdin` (a path inside) as
        its standard input. Raises InfraError when the engine or a gateway fails."""
        self._ensure_image()
        lim = sandbox_of(self.cfg)
        _give(copy.path, lim.user)
        script = "\n".join(filter(None, [prelude(self.services), f"exec <{shlex.quote(stdin)}"]))
        entry = f"python3 -I {HARNESS}/autoresearch_harness/agent.py "
        linger = f'; code=$?; [ "$code" = 0 ] || sleep {LINGER_S:g}; exit $code'  # figures read
        spec = ContainerSpec(
            workspace=copy.path,
            command=entry + shlex.quote(f"{script}\n{command}") + linger,
            budget_s=self.cfg.timeout_s,
            limits=lim,
            mounts=(Mount(inbox, INBOX), Mount(harness.mounted(), HARNESS)),
            env={**self.cfg.env, **env, **container_env(self.services), "HOME": "/tmp"},
            labels={ROLE_LABEL: "agent"},
            seccomp=default_profile(),
            disk=copy,
        )
        sandbox = self._sandbox(self.client)
        with self._lock:
            self._live.add(sandbox)
        served, environ = gateway_view(self.services, os.environ)
        try:
            with serving(served, self.cfg.timeout_s, environ) as gateway:
                result = sandbox.run(gateway.attach(spec))
        finally:
            with self._lock:
                self._live.discard(sandbox)
        return Outcome(result, gateway.figures())
