"""Reaching the Docker engine: a client, or one line a person can act on."""

from __future__ import annotations

import os

import docker
import requests
from docker.errors import DockerException

from orchestrator.errors import EngineUnavailable


def connect(timeout: float = 60) -> docker.DockerClient:
    """A client for the engine at DOCKER_HOST (or the default socket), or one clear line."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except (DockerException, requests.RequestException, OSError) as e:
        raise EngineUnavailable(
            f"Docker engine not reachable at {where} ({type(e).__name__}) — "
            "start it (`make engine` on a root Debian box, else `sudo systemctl start docker`) "
            "and check you may use it (docker group)"
        ) from None
    return client


def on_this_machine(client: docker.DockerClient) -> bool:
    """Whether the engine answers on this machine's unix socket (its cores are ours to count)."""
    return bool(client.api.base_url == "http+docker://localhost")
