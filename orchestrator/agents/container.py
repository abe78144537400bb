"""A coding-agent CLI in a container of its own: where the command agent runs it by default.

The container is made like an experiment's (sandbox/docker.py: non-root, every
capability dropped, no-new-privileges, network none, read-only root with a sized
tmpfs, pids/memory/CPU limits, AIO refused, killed with SIGKILL at `timeout_s`,
always removed, labelled with its owner so a killed orchestrator's is reaped at
the next start). It holds only the proposer's copy (/workspace, read-write), the
prompt and history (/agent, read-only) and the harness library (/harness,
read-only). Its one way out is the gateway (gateway/): a service `llm`, the
Messages API at `agent.base_url`, served on a unix socket with the host's key
added on the host. Inside, the harness's forwarder exposes it on loopback and
ANTHROPIC_BASE_URL points there; ANTHROPIC_API_KEY is a placeholder the gateway
replaces. The key never enters the container.
"""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.agents.config import CommandAgentConfig
from orchestrator.contract.model import Sandbox
from orchestrator.contract.services import Service
from orchestrator.errors import ImageAbsent, InfraError, UserError
from orchestrator.gateway.server import check_environment, serving
from orchestrator.harness import HARNESS_DIR
from orchestrator.sandbox import ContainerResult, ContainerSpec, Mount
from orchestrator.sandbox.seccomp import default_profile

if TYPE_CHECKING:
    from orchestrator.sandbox.docker import DockerSandbox

AGENT_IMAGE = "autoresearch/agent:latest"
"""The image `autoresearch images build agent` (or `make agent-image`) makes: built on first use."""
PLACEHOLDER_KEY = "sk-ant-placeholder-the-gateway-adds-the-key"
"""What the CLI sees as its key: it needs one to start; the gateway drops it and adds the host's."""
HARNESS = "/harness"
INBOX = "/agent"
"""Where the prompt and history files are inside (read-only)."""
ROLE_LABEL = "autoresearch.role"


def llm_service(cfg: CommandAgentConfig, environ: dict[str, str] | None = None) -> Service:
    """The Messages API the CLI reaches through the gateway, with the host's key added there."""
    env = os.environ if environ is None else environ
    upstream = cfg.base_url or env.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com"
    return Service(
        name="llm",
        kind="anthropic",
        upstream=upstream,
        headers={"x-api-key": cfg.key_env},
        methods=["POST"],
        paths=["/v1/messages"],
        max_requests=None,
        max_bytes=None,
    )


def limits(cfg: CommandAgentConfig) -> Sandbox:
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
        self.service = llm_service(cfg)
        check_environment([self.service])  # the key is the setup's: a UserError up front
        self.client = connect()
        self._sandbox = DockerSandbox
        self._live: set[DockerSandbox] = set()
        self._lock = threading.Lock()
        self._image_lock = threading.Lock()
        self._image_ready = False

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
        self, command: str, work: Path, inbox: Path, env: dict[str, str]
    ) -> tuple[ContainerResult, dict[str, float]]:
        """Run `command` on the copy `work` with the files of `inbox`; the result and the
        gateway's figures. Raises InfraError when the engine or the gateway fails."""
        self._ensure_image()
        lim = limits(self.cfg)
        _give(work, lim.user)
        entry = f"exec python3 -I {HARNESS}/autoresearch_harness/agent.py "
        spec = ContainerSpec(
            workspace=work,
            command=entry + shlex.quote(command),
            budget_s=self.cfg.timeout_s,
            limits=lim,
            mounts=(Mount(inbox, INBOX), Mount(HARNESS_DIR, HARNESS)),
            env={
                **self.cfg.env,
                **env,
                "ANTHROPIC_API_KEY": PLACEHOLDER_KEY,
                "HOME": "/tmp",
            },
            labels={ROLE_LABEL: "agent"},
            seccomp=default_profile(),
        )
        sandbox = self._sandbox(self.client)
        with self._lock:
            self._live.add(sandbox)
        try:
            with serving([self.service], self.cfg.timeout_s) as gateway:
                result = sandbox.run(gateway.attach(spec))
        finally:
            with self._lock:
                self._live.discard(sandbox)
        if result.oom_killed:
            raise InfraError(
                f"the agent command ran out of memory (agent.memory = {self.cfg.memory} bytes)"
            )
        return result, gateway.figures()
