"""The host's own limits on an agent's container are named as such, and refuse that one proposal.

A CLI killed by its memory limit, or whose forks its process limit refused, is neither
a CLI that cannot run (the setup's) nor an outage to retry forever: the proposal is
refused with the limit and its setting, and the night goes on. Real engine, runc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.agents import Context
from orchestrator.agents.command import CommandAgent
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.errors import ProposalRefused
from tests.conftest import IMPL, contract_for

IMAGE = "autoresearch/python:3.11"


def _propose(tmp_path: Path, command: str, **over: Any) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "impl.py").write_text(IMPL)
    cfg = CommandAgentConfig(kind="command", command=command, image=IMAGE, timeout_s=60,
                             services=[], **over)  # fmt: skip
    ctx = Context(experiment=1, contract=contract_for(Path("x")), direction="# d", best_commit="0")
    CommandAgent(cfg).propose(ctx, scratch)


def test_an_oom_kill_is_named_the_memory_limit(tmp_path: Path) -> None:
    hog = "python3 -c 'b = bytearray(1024**3); print(len(b))'"
    with pytest.raises(ProposalRefused, match=r"host's memory limit: agent.memory = 64 MiB"):
        _propose(tmp_path, hog, memory="64m")


def test_a_refused_fork_is_named_the_process_limit(tmp_path: Path) -> None:
    forks = "for i in $(seq 40); do sleep 20 & done; wait"
    with pytest.raises(ProposalRefused, match=r"host's process limit: agent.pids = 16 \(\d+ fork"):
        _propose(tmp_path, forks, pids=16)
