"""Shared fixtures: a real Docker engine, the real default image, real git repos in tmp_path.

`make test` sets the engine and image up; when they are missing we fail loudly
(never skip): a green run without a sandbox would prove nothing.
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from orchestrator.agents.container import AgentContainer
from orchestrator.contract.load import build_contract
from orchestrator.contract.model import DEFAULT_IMAGE, Contract
from orchestrator.night import Backoff
from orchestrator.night.driver import Night
from orchestrator.runs import start_run
from orchestrator.sandbox import LABEL
from orchestrator.sandbox.docker import DockerSandbox

IMPL = '''"""The implementation the agent may change."""
OFFSET = 10.0


def score():
    return OFFSET
'''

BENCH = """from impl import score

print(f"score: {score():.6f}")
"""


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(DEFAULT_IMAGE)
    except Exception as e:
        pytest.fail(
            f"Docker engine or {DEFAULT_IMAGE} unavailable ({e}) — run the suite with `make test`",
            pytrace=False,
        )
    return client


@pytest.fixture(scope="session")
def sandbox(docker_client: docker.DockerClient) -> DockerSandbox:
    return DockerSandbox(docker_client)


@pytest.fixture(autouse=True)
def _agents_end(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An agent a test made outside a night ends with the test, as a night ends its own: its
    containers made ahead for proposals to come are removed (the night's `Proposers.close`)."""
    made: list[AgentContainer] = []
    init = AgentContainer.__init__

    def record(self: AgentContainer, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(AgentContainer, "__init__", record)
    yield
    for agent in made:
        agent.cancel()
        agent.seats.close()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository at `root` with `files` committed on branch main."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-qm", "init")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A sample project: impl.py (editable) and bench.py (the evaluator), committed."""
    return make_repo(
        tmp_path / "project", {"impl.py": IMPL, "bench.py": BENCH, "README.md": "sample\n"}
    )


def make_patch(folder: Path, name: str, path: str, old: str, new: str) -> Path:
    """A `git diff`-style patch of one file, from text `old` to text `new`."""
    folder.mkdir(parents=True, exist_ok=True)
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    out = folder / name
    out.write_text(f"diff --git a/{path} b/{path}\n" + "".join(diff))
    return out


def contract_for(patches: Path, **over: object) -> Contract:
    data: dict[str, object] = {
        "implementation": {"paths": ["impl.py"]},
        "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
        "metric": {"name": "score", "goal": "min"},
        # One change at a time, as the replay patches were written; parallel tests say otherwise.
        "budget": {"seconds": 30, "parallel": 1, "pipeline": 0},
        "sandbox": {"memory": "256m", "pids": 64},
        "agent": {"kind": "replay", "patches": str(patches)},
    }
    for dotted in [k for k, v in over.items() if v is None]:  # None: back to the default
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node[key]  # type: ignore[assignment]
        node.pop(leaf, None)  # type: ignore[attr-defined]
    return build_contract(data, dict(over), "test")


@pytest.fixture
def start(repo: Path, sandbox: DockerSandbox) -> Iterator[object]:
    """start(contract, tag) -> Night, on the sample repo, with fast infra retries."""
    messages: list[str] = []

    def _start(contract: Contract, tag: str = "t") -> Night:
        return start_run(
            repo, tag, contract, "test", sandbox, say=messages.append, backoff=Backoff(0.1, 0.5)
        )

    yield _start


def our_containers(client: docker.DockerClient, **labels: str) -> list[object]:
    filters = [f"{LABEL}=1", *(f"{k}={v}" for k, v in labels.items())]
    # sparse: no inspect per container, which would race with a removal in progress
    return client.containers.list(all=True, sparse=True, filters={"label": filters})


def tree_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root except .git and the run folder, by content."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts and ".autoresearch" not in p.parts
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart the Docker engine run last, so nothing else sees the gap."""
    items.sort(key=lambda item: item.get_closest_marker("engine_restart") is not None)


class WrappedSandbox:
    """The real sandbox behind a test's wrapper: subclasses override `run`, the rest passes through."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real

    def run(self, spec):  # type: ignore[no-untyped-def]
        return self.real.run(spec)

    def cancel(self) -> int:
        return self.real.cancel()

    def reopen(self) -> None:
        self.real.reopen()

    def reap(self, *, everything: bool = False, stale=None) -> int:  # type: ignore[no-untyped-def]
        return self.real.reap(everything=everything, stale=stale)

    def image_id(self, image: str) -> str:
        return self.real.image_id(image)
