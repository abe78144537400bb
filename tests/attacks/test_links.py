"""Links on the user's side: a repository's symbolic links must not carry our writes out of it.

A cloned repository can hold a symlinked `autoresearch/` folder, a dangling
`autoresearch.toml` link or a tracked `.autoresearch` link: `init` wrote its files
through them, and the run folder (ledger, logs, scratch copies) landed wherever
the link pointed. Each attack failed before its fix.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator import init
from orchestrator.errors import UserError
from orchestrator.night import Backoff
from orchestrator.runs import read_run, start_run
from tests.conftest import BENCH, IMPL, contract_for, git, make_repo

CLI = str(Path(__file__).parents[2] / ".venv" / "bin" / "autoresearch")
PLAN = init.Plan(edit="impl.py", metric="score", goal="min", kind="latency")


def _outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("someone else's\n")
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_init_refuses_a_linked_folder_that_leaves_the_repository(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL})
    (repo / "autoresearch").symlink_to(outside)
    with pytest.raises(UserError) as refused:
        init.write(repo, PLAN)
    assert f"{repo / 'autoresearch'} is a symbolic link to {outside}" in refused.value.message
    assert _files(outside) == ["keep.txt"] and not (repo / "autoresearch.toml").exists()
    cli = subprocess.run([CLI, "init", "--edit", "impl.py", "--eval", "python bench.py",
                          "--metric", "score", "--goal", "min"], cwd=repo, capture_output=True,
                         text=True)  # fmt: skip
    assert cli.returncode != 0 and "autoresearch init: " in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1 and _files(outside) == ["keep.txt"]


@pytest.mark.parametrize("force", [False, True])
def test_init_refuses_a_dangling_link_to_a_file_outside(tmp_path: Path, force: bool) -> None:
    outside = _outside(tmp_path)
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL})
    (repo / "autoresearch.toml").symlink_to(outside / "bashrc")  # does not exist yet
    with pytest.raises(UserError) as refused:
        init.write(repo, PLAN, force=force)
    assert "autoresearch.toml is a symbolic link to" in refused.value.message
    assert _files(outside) == ["keep.txt"] and not (repo / "autoresearch").exists()


def test_init_follows_a_link_that_stays_in_the_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL})
    (repo / "tools" / "ar").mkdir(parents=True)
    (repo / "autoresearch").symlink_to(Path("tools") / "ar")
    init.write(repo, PLAN)
    assert _files(repo / "tools" / "ar") == ["direction.md", "evaluate.py"]


def test_a_tracked_run_folder_link_is_refused_before_anything_is_made(
    tmp_path: Path, sandbox
) -> None:
    outside = _outside(tmp_path)
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL, "bench.py": BENCH})
    os.symlink(outside, repo / ".autoresearch")
    git(repo, "add", ".autoresearch")
    git(repo, "commit", "-qm", "a link in the clone")
    contract = contract_for(tmp_path, agent={"kind": "none"})
    with pytest.raises(UserError) as refused:
        start_run(repo, "t", contract, "test", sandbox, say=lambda _m: None,
                  backoff=Backoff(0.1, 0.5))  # fmt: skip
    message = refused.value.message
    assert message.startswith("the run folder: ") and f"{repo / '.autoresearch'}" in message
    assert "\n" not in message
    assert _files(outside) == ["keep.txt"]  # no ledger, log or scratch copy out there
    assert "autoresearch/t" not in git(repo, "branch", "--list")  # nor a run branch
    with pytest.raises(UserError, match="is a symbolic link to"):
        read_run(repo, "t")  # `resume`, `status`, `report` refuse it too
