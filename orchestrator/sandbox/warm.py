"""A container made ahead: created and started for an attempt before its candidate is known,
waiting at a gate until the host lets it go.

Starting a container costs the engine about 0.2 s, more under load, and a night of short
experiments pays it on every experiment's critical path. So the executor makes the next
attempt's container while the current one runs (executors/seats.py), on a work folder of
its own, with the mounts, limits and variable names the attempts of its contract have.
Its command is ours and waits (`GATE`: a `read` on its standard input) before anything
else runs; no file of any candidate is in its folder yet. When the attempt comes, its
files are unpacked into that folder and the host writes the attempt's own variable values
on the container's standard input, which then closes: the clock, the budget and the
samplers start there, as they start at a fresh container's start.

A container that waited `TTL_S`, or whose spec differs in anything but the variables'
values from the attempt's (another folder of modules, another budget), is removed and the
attempt runs in a fresh container as before.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import requests
from docker.errors import APIError

from orchestrator.errors import InfraError
from orchestrator.sandbox import ContainerSpec
from orchestrator.sandbox.cgroups import cpu_used

if TYPE_CHECKING:
    from docker.models.containers import Container

    from orchestrator.sandbox.docker import DockerSandbox

GATE = (
    'IFS= read -r _autoresearch_go || exit 125; eval "$_autoresearch_go"; unset _autoresearch_go; '
    "exec </dev/null; "
)
"""Ahead of the spec's command: wait for one line of `export NAME=value` words, then run it
with nothing on its standard input, as a fresh container's command has."""
TTL_S = 600.0
"""A container made ahead and not used by then is removed, not used."""


@dataclass(eq=False)
class Warm:
    """One container made ahead for `spec` (its command behind the gate), started, waiting."""

    container: Container
    stdin: Any
    """The attach socket to its standard input: the one line to go is written there."""
    spec: ContainerSpec
    made: float = field(default_factory=time.monotonic)
    _taken: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fits(self, spec: ContainerSpec) -> bool:
        """Whether `spec` (an attempt's, on this container's folder) is what it was made for,
        but for its variables' values and labels; and whether it is young enough."""
        if time.monotonic() - self.made > TTL_S or "\n" in "".join(spec.env.values()):
            return False
        if sorted(spec.env) != sorted(self.spec.env):
            return False
        return replace(spec, env={}, labels={}, warm=None) == replace(
            self.spec, env={}, labels={}, warm=None
        )

    def take(self) -> Container:
        """The container, for the one run that goes in it (a second take is a bug)."""
        with self._lock:
            assert not self._taken, "a container made ahead runs once"
            self._taken = True
        return self.container

    @property
    def taken(self) -> bool:
        return self._taken

    def go(self, env: dict[str, str]) -> float:
        """Let it run with `env`'s values; its standard input then closes. The CPU seconds it
        used before (its boot and its wait at the gate: not the run's). Raises InfraError
        when it is gone or cannot be told (the attempt is retried, never the candidate's)."""
        changed = {k: v for k, v in env.items() if self.spec.env.get(k) != v}
        words = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(changed.items()))
        line = f"export {words}" if words else ":"
        raw = getattr(self.stdin, "_sock", self.stdin)
        try:
            self.container.reload()
            if self.container.status != "running":
                raise InfraError(
                    f"the container made ahead is {self.container.status}, not waiting"
                )
            before = cpu_used(self.container.id)
            raw.sendall(line.encode() + b"\n")
            raw.shutdown(socket.SHUT_WR)
            return before
        except (OSError, APIError, requests.RequestException) as e:
            raise InfraError(f"the container made ahead could not be started: {e}") from e
        finally:
            with contextlib.suppress(OSError):
                self.stdin.close()


def make(sandbox: DockerSandbox, spec: ContainerSpec) -> Warm:
    """Create and start `spec`'s container behind the gate. Raises InfraError."""
    gated = replace(spec, command=GATE + spec.command, warm=None)
    container = sandbox.create(gated, gate_s=TTL_S)
    try:
        container.start()
        stdin = sandbox.client.api.attach_socket(container.id, params={"stdin": 1, "stream": 1})
    except (APIError, requests.RequestException, OSError) as e:
        sandbox.remove(container)
        raise InfraError(f"making a container ahead failed: {e}") from e
    return Warm(container, stdin, spec)


def discard(sandbox: DockerSandbox, warm: Warm) -> None:
    """Remove a container made ahead that no run took (it never went: nothing ran in it); one
    the engine cannot remove now is removed before the next run, or at the end."""
    with contextlib.suppress(OSError):
        warm.stdin.close()
    if not warm.taken:
        sandbox.remove(warm.container)
