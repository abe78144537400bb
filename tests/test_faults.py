"""Faults of the infrastructure: never the candidate's failure, never the end of the night.

The engine-restart test restarts the real Docker daemon, so it runs last
(see conftest's collection hook).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import docker
import pytest

from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import IMPL, WrappedSandbox, contract_for, make_patch, our_containers

IMPROVED = IMPL.replace("10.0", "4.0")
ROOT = Path(__file__).resolve().parents[1]


def _patches(tmp_path: Path, body: str = "") -> Path:
    folder = tmp_path / "patches"
    make_patch(folder, "01-lower.patch", "impl.py", IMPL, IMPROVED + body)
    return folder


class _ImageVanishes(WrappedSandbox):
    """The night's image is removed from the engine just before its first container."""

    def __init__(self, real, client: docker.DockerClient, tag: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(real)
        self.client, self.tag, self.gone = client, tag, False

    def run(self, spec):  # type: ignore[no-untyped-def]
        if not self.gone:
            self.gone = True
            self.client.images.remove(self.tag)
        return self.real.run(spec)


def test_a_missing_image_pauses_the_night_until_it_is_back(
    repo: Path, tmp_path: Path, sandbox, docker_client: docker.DockerClient
) -> None:
    tag = "autoresearch/appears-later:1"
    docker_client.images.get("autoresearch/python:3.11").tag(tag)
    said: list[str] = []
    vanishing = _ImageVanishes(sandbox, docker_client, tag)
    contract = contract_for(_patches(tmp_path), **{"sandbox.image": tag})
    run = start_run(
        repo, "img", contract, "test", vanishing, say=said.append, backoff=Backoff(0.2, 0.5)
    )
    result: dict[str, str] = {}
    worker = threading.Thread(target=lambda: result.setdefault("why", run.execute()), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while sum("infrastructure error" in m for m in said) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sum("infrastructure error" in m for m in said) >= 3
    assert "not present locally" in next(m for m in said if "infrastructure error" in m)
    try:
        docker_client.images.get("autoresearch/python:3.11").tag(tag)  # the image comes back
        worker.join(timeout=60)
        assert result.get("why") == "the agent has nothing more to propose"
    finally:
        docker_client.images.remove(tag)
    base, first = run.ledger.get(0), run.ledger.get(1)
    assert base.status == "keep" and base.infra_retries >= 3  # never recorded as a crash
    assert first.status == "keep" and first.infra_retries == 0


def test_a_missing_image_at_the_start_is_one_line_before_anything_is_made(
    repo: Path, tmp_path: Path, sandbox, docker_client: docker.DockerClient
) -> None:
    from orchestrator.errors import ImageMissing

    contract = contract_for(_patches(tmp_path), **{"sandbox.image": "autoresearch/never-built:0"})
    with pytest.raises(ImageMissing, match="is not built — run `autoresearch images build`"):
        start_run(repo, "none", contract, "test", sandbox, say=lambda _m: None)
    assert not (repo / ".autoresearch" / "none").exists()
    assert (
        b"autoresearch/none"
        not in subprocess.run(
            ["git", "-C", str(repo), "branch", "--list"], capture_output=True, check=True
        ).stdout
    )


@pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to mount a small filesystem for the run folder"
)
def test_a_full_disk_pauses_the_run_and_loses_nothing(tmp_path: Path, sandbox) -> None:
    from tests.conftest import BENCH, make_repo

    small, image = tmp_path / "small", tmp_path / "small.img"
    small.mkdir()
    with image.open("wb") as f:
        f.truncate(32 * 2**20)
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(image)], check=True
    )
    subprocess.run(["mount", "-o", "loop", str(image), str(small)], check=True)
    try:
        repo = make_repo(small / "project", {"impl.py": IMPL, "bench.py": BENCH})
        filler = small / "filler"

        def hog(ready: threading.Event) -> None:
            """Keep the disk full (whatever frees up is taken again) for 2 s, then free it."""
            end = time.monotonic() + 2
            with filler.open("wb", buffering=0) as f:
                while time.monotonic() < end:
                    for chunk in (65536, 4096, 1):
                        with __import__("contextlib").suppress(OSError):
                            while f.write(b"\0" * chunk):
                                pass
                    ready.set()
                    time.sleep(0.002)
            filler.unlink()

        class FillingSandbox(WrappedSandbox):
            """The real sandbox, with a disk that fills up at the worst moment."""

            def __init__(self) -> None:
                super().__init__(sandbox)
                self.filled = False

            def run(self, spec):  # type: ignore[no-untyped-def]
                result = sandbox.run(spec)
                if spec.labels["autoresearch.experiment"] == "1" and not self.filled:
                    self.filled = True  # the disk fills up just as experiment 1 ends, for 2 s
                    ready = threading.Event()
                    threading.Thread(target=hog, args=(ready,), daemon=True).start()
                    ready.wait(10)
                return result

        said: list[str] = []
        contract = contract_for(_patches(tmp_path), **{"sandbox.disk": "8m"})
        run = start_run(
            repo,
            "full",
            contract,
            "test",
            FillingSandbox(),
            say=said.append,
            backoff=Backoff(0.3, 1),
        )
        assert run.execute() == "the agent has nothing more to propose"
        assert any(m.startswith("disk full under") for m in said), said
        rows = [(e.id, e.phase, e.status) for e in run.ledger.experiments()]
        assert rows == [(0, "done", "keep"), (1, "done", "keep")]
        assert len((run.run_dir / "results.tsv").read_text().splitlines()) == 3
        run.ledger.close()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def _dockerd_pid() -> int | None:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


@pytest.mark.engine_restart
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dockerd") is None, reason="needs root and a local dockerd"
)
def test_the_engine_restarting_mid_experiment_is_retried_and_merged_once(
    repo: Path, tmp_path: Path, sandbox, docker_client: docker.DockerClient
) -> None:
    patches = _patches(tmp_path, body="\nimport time\ntime.sleep(4)\n")
    said: list[str] = []
    run = start_run(
        repo, "eng", contract_for(patches), "test", sandbox, say=said.append, backoff=Backoff(1, 4)
    )
    result: dict[str, str] = {}
    worker = threading.Thread(target=lambda: result.setdefault("why", run.execute()), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        e = run.ledger.get(1) if run.ledger.get(0) and run.ledger.get(0).phase == "done" else None
        if (
            e
            and e.phase == "running"
            and our_containers(docker_client, **{"autoresearch.run": "eng"})
        ):
            break
        time.sleep(0.1)
    pid = _dockerd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # the daemon goes away mid-experiment
    for _ in range(300):
        if _dockerd_pid() is None:
            break
        time.sleep(0.1)
    subprocess.run([str(ROOT / "scripts" / "ensure-docker")], check=True)  # and comes back
    worker.join(timeout=120)
    assert result.get("why") == "the agent has nothing more to propose"
    e = run.ledger.get(1)
    assert e.status == "keep" and e.merged and e.infra_retries >= 1
    assert [x.id for x in run.ledger.experiments()] == [0, 1]
    from tests.conftest import git

    assert git(repo, "rev-list", "--count", "main..autoresearch/eng").strip() == "1"  # merged once
    assert our_containers(docker.from_env(), **{"autoresearch.run": "eng"}) == []
