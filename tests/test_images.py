"""Image recipes: the mirror comes from this machine's apt sources; builds are cached by input hash."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from orchestrator.contract.model import DEFAULT_IMAGE
from orchestrator.errors import UserError
from orchestrator.sandbox import images

ROOT = Path(__file__).resolve().parents[1]


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "other.sources").write_text(
        "Types: deb\nURIs: https://example.invalid/node\nSuites: nodistro\nComponents: main\n"
    )
    (d / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert images.apt_mirror(tmp_path) == "http://mirror.example.invalid/debian"


def test_mirror_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# x\ndeb [arch=amd64] http://old.example.invalid/debian bookworm main contrib\n"
    )
    assert images.apt_mirror(tmp_path) == "http://old.example.invalid/debian"


def test_no_mirror_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(UserError, match="no apt source for Debian bookworm main"):
        images.apt_mirror(tmp_path)


def test_a_second_build_is_a_cached_no_op(docker_client: docker.DockerClient) -> None:
    said: list[str] = []
    assert images.build(docker_client, "python", say=said.append) == DEFAULT_IMAGE
    assert said == [
        f"{DEFAULT_IMAGE} is up to date (inputs {images.inputs_hash(images.IMAGES_DIR / 'python')})"
    ]


def test_the_image_runs_as_a_non_root_user_with_python_and_numpy(
    docker_client: docker.DockerClient,
) -> None:
    out = docker_client.containers.run(
        DEFAULT_IMAGE, ["sh", "-c", "id -u; id -g; python -c 'import numpy; print(numpy.__name__)'"],
        remove=True, network_mode="none",
    )  # fmt: skip
    assert out.decode().split() == ["10001", "10001", "numpy"]


def _recipe(name: str) -> list[str]:
    return [
        ln.strip()
        for ln in (images.IMAGES_DIR / name / "Dockerfile").read_text().splitlines()
        if ln.strip()
    ]


def test_the_gpu_image_has_the_same_user_and_layout() -> None:
    gpu, cpu = _recipe("pytorch-cuda"), _recipe("python")
    froms = [ln for ln in gpu if ln.startswith("FROM ")]
    assert len(froms) == 1 and froms[0].startswith("FROM pytorch/pytorch:") and "cuda" in froms[0]
    for line in (
        "USER 10001:10001",
        "WORKDIR /workspace",
        "ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8",
    ):
        assert line in gpu and line in cpu
    passwd = "sandbox:x:10001:10001:sandbox:/tmp:/usr/sbin/nologin"
    assert any(passwd in ln for ln in gpu) and any(passwd in ln for ln in cpu)
    assert any("mkdir -p /workspace /results" in ln for ln in gpu)
    # the name the contract examples and the README use is the one `images build` makes
    assert "autoresearch/pytorch-cuda:latest" in (ROOT / "README.md").read_text()
    assert images.IMAGE_TAGS["pytorch-cuda"] in (ROOT / "sandbox-images" / "README.md").read_text()
