"""The gateway of one run: each service on a unix socket in a folder the container mounts.

Started before the container, stopped after it; its figures are read once it has
stopped (every answer counted). The folder is `/tmp/autoresearch-gw-*/s`: short
(a unix socket's path has at most 107 bytes), its parent 0700 so no other user of
the host reaches the sockets, mounted read-only at `/services` in the container,
where the harness's forwarder exposes each socket on a loopback port. The keys are
read from this process's environment into the gateway's memory only. The run's services
share one set of bounds (limits.py): a flood on their sockets costs this process a fixed
number of threads, descriptors and buffered bytes, whatever the container sends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from orchestrator.contract.services import Service
from orchestrator.errors import InfraError, UserError
from orchestrator.gateway.limits import BUFFERED, CONNECTIONS, Limits, Listener
from orchestrator.gateway.proxy import Handler, Route
from orchestrator.gateway.tally import Tally
from orchestrator.sandbox import ContainerSpec, Mount
from orchestrator.sandbox.owner import owner_alive, owner_id

SERVICES_DIR = "/services"
"""Where the sockets are inside the container (one per service, named after it)."""
PREFIX = "autoresearch-gw-"


def missing(services: list[Service], environ: Mapping[str, str]) -> list[str]:
    """'ANTHROPIC_API_KEY (service llm, header x-api-key)' for each variable not set."""
    return [
        f"{env} (service {s.name}, header {header})"
        for s in services
        for header, env in s.headers.items()
        if not environ.get(env)
    ]


def check_environment(services: list[Service], environ: Mapping[str, str] | None = None) -> None:
    """Raises UserError naming the first variable a service needs that is not set."""
    env = os.environ if environ is None else environ
    for s in services:
        try:
            s.resolved(env)
        except ValueError as e:
            raise UserError(f"service {s.name}: {s.upstream_env} = {e}") from None
    gone = missing(services, env)
    if gone:
        raise UserError(
            f"environment variable {gone[0]} is not set — export it before the run; "
            "the gateway adds it on the host, it never enters a container"
        )


class Gateway:
    """The services of one run stage. `start()`, `attach(spec)`, run it, `stop()`, `figures()`."""

    def __init__(
        self,
        services: list[Service],
        timeout_s: float,
        environ: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        gone = missing(services, env)
        if gone:
            raise InfraError(f"the gateway cannot start: {gone[0]} is not set on this host")
        self.tallies = {s.name: Tally(s) for s in services}
        try:
            upstreams = {s.name: s.resolved(env) for s in services}
        except ValueError as e:
            raise InfraError(f"the gateway cannot start: {e} (from upstream_env)") from None
        self.limits = limits or Limits(CONNECTIONS, BUFFERED)
        self.routes = [
            Route(
                s,
                upstreams[s.name],
                self.tallies[s.name],
                {h: env[e] for h, e in s.headers.items()},
                timeout_s,
                self.limits,
            )
            for s in services
        ]
        self.folder: Path | None = None
        self._servers: list[tuple[Listener, threading.Thread]] = []

    def start(self, folder: Path | None = None) -> None:
        """Bind every service's socket and serve it (OSError when the host refuses), in
        `folder` (one `socket_folder()` made, for a container made ahead) or a new one."""
        if not self.routes:
            return
        self.folder = folder or socket_folder()
        sockets = self.folder / "s"
        for route in self.routes:
            handler = type("H", (Handler,), {"route": route, "timeout": route.timeout_s})
            path = sockets / route.service.name
            server = Listener(str(path), handler, self.limits)
            os.chmod(path, 0o666)  # the parent folder (0700) keeps the host's other users out
            thread = threading.Thread(
                target=server.serve_forever, args=(0.1,), name=f"gateway-{route.service.name}"
            )
            thread.daemon = True
            thread.start()
            self._servers.append((server, thread))

    def attach(self, spec: ContainerSpec) -> ContainerSpec:
        """`spec` with the sockets mounted and the services named for the harness's forwarder."""
        return spec if self.folder is None else attached(spec, self.folder, list(self.tallies))

    def stop(self) -> None:
        """Stop serving, cut connections and upstreams still open, wait for the workers, remove
        the folder."""
        for server, _thread in self._servers:
            server.shutdown()
        for server, thread in self._servers:
            server.server_close()  # connections still in the backlog are refused
            thread.join(timeout=5)
        for route in self.routes:
            route.close()
        self.limits.close()
        self._servers.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def figures(self) -> dict[str, float]:
        """Every service's `gateway.<name>.<figure>`: trusted metrics of the run."""
        out: dict[str, float] = {}
        for tally in self.tallies.values():
            out.update(tally.metrics())
        return out


def socket_folder() -> Path:
    """A new folder for a gateway's sockets: short, its parent 0700, its `s` open to the
    container's users."""
    sweep()
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=_short_tmp()))
    (folder / "owner").write_text(owner_id())
    sockets = folder / "s"
    sockets.mkdir(mode=0o755)
    os.chmod(sockets, 0o755)  # whatever the umask: the container's users enter it
    return folder


def attached(spec: ContainerSpec, folder: Path, names: list[str]) -> ContainerSpec:
    """`spec` with the sockets of `folder` mounted and the services `names` named for the
    harness's forwarder (what a gateway serving there attaches)."""
    env = {**spec.env, "AUTORESEARCH_SERVICES": ",".join(names)}
    env["AUTORESEARCH_SERVICES_DIR"] = SERVICES_DIR
    mount = Mount(folder / "s", SERVICES_DIR, read_only=True)
    return replace(spec, mounts=(*spec.mounts, mount), env=env)


@contextlib.contextmanager
def serving(
    services: list[Service],
    timeout_s: float,
    environ: Mapping[str, str] | None = None,
    folder: Path | None = None,
) -> Iterator[Gateway]:
    """A started gateway (one that does nothing without services), stopped on the way out;
    serving in `folder` when one was made for it (`socket_folder`).

    Raises InfraError when it cannot start (a variable gone, the host refusing a socket)."""
    gateway = Gateway(services, timeout_s, environ)
    try:
        gateway.start(folder)
    except OSError as e:
        gateway.stop()
        raise InfraError(f"the gateway could not start: {e}") from e
    try:
        yield gateway
    finally:
        gateway.stop()


def cost(figures: Mapping[str, float]) -> float:
    """What a run's services cost (USD), from its gateway figures."""
    return sum(v for k, v in figures.items() if k.startswith("gateway.") and k.endswith(".usd"))


def sweep() -> int:
    """Remove the socket folders of gateways whose process died (a killed night); how many."""
    removed = 0
    for folder in Path(_short_tmp()).glob(f"{PREFIX}*"):
        try:
            owner = (folder / "owner").read_text().strip()
        except OSError:
            continue
        if not owner_alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _short_tmp() -> str:
    """/tmp where it exists (a short path, whatever TMPDIR says), else the temp folder."""
    return "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
