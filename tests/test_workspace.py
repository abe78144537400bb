"""Freezing a proposal: every kind of diff attack is refused before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.contract.model import Implementation
from orchestrator.errors import ProposalRefused, WorkspaceError
from orchestrator.workspace import Workspace
from tests.conftest import git


@pytest.fixture
def ws(repo: Path) -> Workspace:
    w = Workspace(
        repo, "w", Implementation(paths=["impl.py", "pkg/**/*.py"], max_file_bytes=1024 * 1024)
    )
    w.start()
    return w


def _scratch(ws: Workspace, tmp_path: Path) -> Path:
    s = tmp_path / "scratch"
    ws.export(ws.best(), s)
    return s


def _refused(ws: Workspace, scratch: Path) -> str:
    with pytest.raises(ProposalRefused) as e:
        ws.freeze(scratch, ws.best(), "x", 1)
    return e.value.reason


def test_start_touches_nothing_of_the_user(repo: Path, ws: Workspace) -> None:
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert "/.autoresearch/" in (repo / ".git/info/exclude").read_text()


def test_a_good_change_freezes_into_a_child_commit(ws: Workspace, tmp_path: Path) -> None:
    s = _scratch(ws, tmp_path)
    (s / "impl.py").write_text("OFFSET = 1\n")
    (s / "pkg" / "sub").mkdir(parents=True)
    (s / "pkg" / "sub" / "new.py").write_text("X = 1\n")
    commit, _diff = ws.freeze(s, ws.best(), "ok", 1)
    assert git(ws.root, "rev-parse", f"{commit}~1").strip() == ws.best()
    assert git(ws.root, "rev-parse", ws.candidate_ref(1)).strip() == commit


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (lambda s: (s / "README.md").write_text("x"), "README.md is outside implementation.paths"),
        (lambda s: (s / "bench.py").write_text("print('score: 0')"), "bench.py is outside"),
        (
            lambda s: (s / "impl.py").unlink() or os.symlink("/etc/passwd", s / "impl.py"),
            "symlinks are not allowed",
        ),
        (
            lambda s: (s / "pkg").mkdir() or os.symlink("../impl.py", s / "pkg" / "a.py"),
            "symlinks are not allowed",
        ),
        (
            lambda s: (s / "impl.py").write_bytes(b"\x7fELF\x00\x01binary"),
            "binary files are not allowed",
        ),
        (
            lambda s: (s / "impl.py").write_bytes(b"#" * (2 * 1024 * 1024)),
            "over implementation.max_file_bytes",
        ),
        (lambda s: os.chmod(s / "impl.py", 0o755), "file mode may not change"),
        (lambda s: (s / ".gitattributes").write_text("*.py filter=evil\n"), "git control files"),
        (
            lambda s: (
                (s / "pkg").mkdir() or (s / "pkg" / ".gitattributes").write_text("* filter=x")
            ),
            "git control files",
        ),
        (lambda s: None, "changes nothing"),
    ],
    ids=[
        "outside",
        "evaluator",
        "symlink-host",
        "symlink-rel",
        "binary",
        "50mb",
        "exec-bit",
        "gitattributes",
        "nested-gitattributes",
        "empty",
    ],
)
def test_diff_attacks_are_refused(ws: Workspace, tmp_path: Path, attack, reason: str) -> None:
    s = _scratch(ws, tmp_path)
    attack(s)
    assert reason in _refused(ws, s)
    assert git(ws.root, "for-each-ref", "refs/autoresearch/") == ""  # nothing frozen


def test_git_hooks_in_the_scratch_never_reach_the_repo(
    ws: Workspace, tmp_path: Path, repo: Path
) -> None:
    s = _scratch(ws, tmp_path)
    hooks = s / ".git" / "hooks"
    hooks.mkdir(parents=True)
    (hooks / "post-checkout").write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    (s / "impl.py").write_text("OFFSET = 2\n")
    commit, _diff = ws.freeze(s, ws.best(), "ok", 1)
    assert git(repo, "diff", "--name-only", ws.best(), commit).split() == ["impl.py"]
    assert not (repo / ".git" / "hooks" / "post-checkout").exists()


def test_a_nested_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    ws = Workspace(repo, "n", Implementation(paths=["pkg"]))  # the gitlink's own path is allowed
    ws.start()
    s = _scratch(ws, tmp_path)
    (s / "pkg").mkdir()
    git(s / "pkg", "init", "-q")
    (s / "pkg" / "a.py").write_text("x = 1\n")
    git(s / "pkg", "add", ".")
    git(s / "pkg", "commit", "-qm", "nested")
    assert "only regular files" in _refused(ws, s)


def test_fast_forward_is_compare_and_swap(ws: Workspace, tmp_path: Path) -> None:
    s = _scratch(ws, tmp_path)
    (s / "impl.py").write_text("OFFSET = 3\n")
    base = ws.best()
    commit, _diff = ws.freeze(s, base, "ok", 1)
    ws.fast_forward(commit, base)
    assert ws.best() == commit
    with pytest.raises(WorkspaceError, match=r"update-ref.*but expected"):
        ws.fast_forward(base, base)  # the branch moved: refused, not clobbered (nor retried)


def test_uncommitted_implementation_files_are_named_whole(repo: Path, ws: Workspace) -> None:
    """The start's warning names each changed file as it is (git's status puts a space first
    for a change not staged: stripped, the first name lost its first letter)."""
    (repo / "impl.py").write_text("changed\n")  # not staged
    (repo / "pkg").mkdir()
    (repo / "pkg" / "new.py").write_text("x = 1\n")  # untracked
    (repo / "pkg" / "staged.py").write_text("y = 2\n")
    git(repo, "add", "pkg/staged.py")
    (repo / "bench.py").write_text("not the implementation\n")
    git(repo, "mv", "README.md", "pkg/moved.py")  # a rename: its old path follows, not a file
    assert sorted(ws.uncommitted()) == ["impl.py", "pkg/moved.py", "pkg/new.py", "pkg/staged.py"]
