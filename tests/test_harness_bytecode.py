"""The harness is mounted with its bytecode compiled once (no experiment compiles ~5,000 lines
again), from a folder only this user writes: one planted by another user is never mounted."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from orchestrator import harness


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(harness, "_made", None)
    return tmp_path / "cache" / "autoresearch" / "harness"


def test_the_mounted_harness_is_the_sources_with_their_bytecode(cache: Path) -> None:
    folder = harness.mounted()
    assert folder.parent == cache and harness.mounted() == folder  # made once
    package = folder / "autoresearch_harness"
    sources = sorted((harness.HARNESS_DIR / "autoresearch_harness").glob("*.py"))
    assert [p.name for p in sorted(package.glob("*.py"))] == [p.name for p in sources]
    for src in sources:
        assert (package / src.name).read_bytes() == src.read_bytes()
        assert Path(importlib.util.cache_from_source(str(package / src.name))).is_file()
    assert (folder.stat().st_mode & 0o777) == 0o755  # the sandbox's users read it


@pytest.mark.skipif(os.getuid() != 0, reason="planting another user's folder needs root")
def test_a_folder_another_user_planted_is_never_mounted(cache: Path) -> None:
    folder = harness.mounted()
    os.chown(folder, 12345, 12345)  # as if another user had made it first
    harness._made = None
    assert harness.mounted() == harness.HARNESS_DIR  # the sources, compiled per run as before
    os.chown(folder, os.getuid(), os.getgid())
    folder.chmod(0o777)  # writable by others: the same
    harness._made = None
    assert harness.mounted() == harness.HARNESS_DIR
