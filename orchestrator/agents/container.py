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

Its containers are made ahead (executors/seats.py, as an experiment's are): while the
proposals in flight think, the next ones' containers are created and started on empty
folders, waiting at a gate that runs nothing of the command; a proposal's copy and
prompt are then made in the folders its container already mounts, and it goes. One per
proposal in flight, made one at a time, so the proposals that start together once the
first ones end (night/proposers.py) do not all wait for the engine at once.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import harness
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.services import PLACEHOLDER_KEYS, container_env, gateway_view, prelude
from orchestrator.contract.model import Sandbox
from orchestrator.errors import Cancelled, ImageAbsent, UserError
from orchestrator.executors.seats import Seat, Seats
from orchestrator.executors.workdirs import Held, Leftover
from orchestrator.gateway.server import attached, check_environment, serving, socket_folder
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
ROLE = "agent"
AHEAD = 1
"""Containers made ahead for each proposal in flight (its successor's), one at a time: more
were made and then removed unused at the night's end, and on a busy host their making slowed
the proposals in flight."""
LINGER_S = 0.5
"""How long the container outlives a command that failed: its cgroup (the forks refused, which
explain a failure) is read by then. A command that succeeded ends its container at once."""


@dataclass(frozen=True)
class Invocation:
    """How the command runs: its text, its variables, and the file its standard input reads."""

    command: str
    env: dict[str, str]
    stdin: str


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


def seat_inbox(held: Held) -> Path:
    """Where a container made ahead finds the prompt and history (beside the copy's disk)."""
    return held.parent / "inbox"


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

    def __init__(
        self,
        cfg: CommandAgentConfig,
        box: Path,
        leftover: Leftover,
        say: Callable[[str], None] = print,
    ) -> None:
        from orchestrator.sandbox.docker import DockerSandbox
        from orchestrator.sandbox.engine import connect

        self.cfg, self.say = cfg, say
        self.services = cfg.ways_out()
        check_environment(self.services)  # a key is the setup's: a UserError up front
        self.client = connect()
        self._sandbox = DockerSandbox
        self.seats = Seats(DockerSandbox(self.client), box, leftover, each=AHEAD, makers=1)
        self._live: set[DockerSandbox] = set()
        self._lock = threading.Lock()
        self._cancelled = False
        """Set for good by `cancel`: the night is torn down or over, no run starts after it."""
        self._image_lock = threading.Lock()
        self._image_ready = False
        if cfg.image != AGENT_IMAGE:  # refused before the run is made; the default is built
            self._ensure_image()

    def cancel(self) -> None:
        """Kill every container in flight, remove those made ahead; no run starts after this.
        Each run has a sandbox of its own, never reopened: one created before the cancel and
        started after it is killed as it starts."""
        with self._lock:
            self._cancelled = True
            live = list(self._live)
        for sandbox in live:
            sandbox.cancel()
        self.seats.clear()

    @contextlib.contextmanager
    def seat(self, how: Invocation) -> Iterator[Seat | None]:
        """A container made ahead to run `how` (None when none is ready), its folders those
        the proposal's copy and inbox are made in; and one more made for a proposal to come."""

        def template(held: Held) -> ContainerSpec:
            inbox = seat_inbox(held)
            inbox.mkdir(mode=0o755, exist_ok=True)
            spec = self.spec(how, held.workdir, inbox)
            if not self.services:
                return spec
            held.beside.append(socket_folder())
            return attached(spec, held.beside[-1], [s.name for s in self.services])

        with self.seats.attempt():
            seat = self.seats.take(ROLE)
            if not self._cancelled:
                self.seats.want(ROLE, self.cfg.disk, template)
            try:
                yield seat
            finally:
                if seat is not None:
                    self.seats.release(seat)

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

    def spec(self, how: Invocation, copy: Workdir, inbox: Path) -> ContainerSpec:
        """The container that runs `how` on the copy (its gateway not yet attached)."""
        stdin = f"exec <{shlex.quote(how.stdin)}"
        script = "\n".join(filter(None, [prelude(self.services), stdin]))
        entry = f"python3 -I {HARNESS}/autoresearch_harness/agent.py "
        linger = f'; code=$?; [ "$code" = 0 ] || sleep {LINGER_S:g}; exit $code'  # figures read
        return ContainerSpec(
            workspace=copy.path,
            command=entry + shlex.quote(f"{script}\n{how.command}") + linger,
            budget_s=self.cfg.timeout_s,
            mounts=(Mount(inbox, INBOX), Mount(harness.mounted(), HARNESS)),
            env={**self.cfg.env, **how.env, **container_env(self.services), "HOME": "/tmp"},
            labels={ROLE_LABEL: ROLE},
            seccomp=default_profile(),
            disk=copy,
            limits=sandbox_of(self.cfg),
        )

    def run(self, how: Invocation, copy: Workdir, inbox: Path, seat: Seat | None = None) -> Outcome:
        """Run `how` on the copy with the files of `inbox` (its standard input one of them);
        in `seat`'s container when it was made for exactly this spec. Raises InfraError when
        the engine or a gateway fails."""
        self._ensure_image()
        spec = self.spec(how, copy, inbox)
        _give(copy.path, spec.limits.user)
        sandbox = self._sandbox(self.client)
        with self._lock:
            if self._cancelled:  # a proposal that got here after the teardown starts nothing
                raise Cancelled("the agent was cancelled: the night is torn down or over")
            self._live.add(sandbox)
        served, environ = gateway_view(self.services, os.environ)
        folder = seat.held.beside[0] if seat is not None and seat.held.beside else None
        try:
            with serving(served, self.cfg.timeout_s, environ, folder) as gateway:
                full = gateway.attach(spec)
                warm = seat.usable(full) if seat is not None else None
                result = sandbox.run(replace(full, warm=warm))
        finally:
            with self._lock:
                self._live.discard(sandbox)
        return Outcome(result, gateway.figures())
