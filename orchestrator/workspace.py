"""The host git repository, touched only through refs.

The user's checkout, index and uncommitted work are never touched: we read
commits, write objects, and move two kinds of refs — the run branch
`autoresearch/<tag>` and frozen candidates under `refs/autoresearch/<tag>/`.
We never run `git commit` or `checkout` (no hooks, no filters on the user's tree).

A proposal is frozen into a commit BEFORE it runs; that commit is what merges if
it wins, so nothing the container writes can reach the repo.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from orchestrator import rules, sanitize
from orchestrator.contract.model import Implementation
from orchestrator.contract.paths import matches_any
from orchestrator.errors import ProposalRefused, WorkspaceError
from orchestrator.folders import unpack
from orchestrator.rules import Change

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "autoresearch",
    "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
    "GIT_COMMITTER_NAME": "autoresearch",
    "GIT_COMMITTER_EMAIL": "autoresearch@localhost",
    "GIT_TERMINAL_PROMPT": "0",
}
LOCK_TRIES = 10
LOCK_PAUSE_S = 0.2
"""update_ref waits 0.2 s, 0.4 s, ... between tries: 9 s in all, past STALE_LOCK_S."""
STALE_LOCK_S = 5.0
"""A ref lock older than this is a killed process's: a git update holds one for milliseconds."""


def repo_root(start: Path) -> Path:
    proc = subprocess.run(
        ["git", "-C", str(start), "rev-parse", "--show-toplevel"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise WorkspaceError(
            f"{start} is not inside a git repository — run `git init` and commit your files first"
        )
    return Path(proc.stdout.strip())


class Workspace:
    """Git operations of one run, on the repository at `root`."""

    def __init__(self, root: Path, tag: str, implementation: Implementation) -> None:
        self.root = root
        self.tag = tag
        self.impl = implementation
        self.branch = f"autoresearch/{tag}"
        self.branch_ref = f"refs/heads/{self.branch}"
        self._blob_cache: dict[str, dict[str, bytes]] = {}
        self._added: dict[tuple[str, str], tuple[str, ...]] = {}

    # -- plumbing ---------------------------------------------------------
    def git(
        self, *args: str, env: dict[str, str] | None = None, input: bytes | None = None
    ) -> bytes:
        proc = subprocess.run(
            ["git", "-C", str(self.root), *args],
            capture_output=True,
            input=input,
            env={**os.environ, **_GIT_ENV, **(env or {})},
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            if shutil.disk_usage(self.root).free < 1024**2:
                # git rarely says ENOSPC; a failure on a full disk is the disk's, not the repo's
                raise OSError(errno.ENOSPC, f"git {args[0]} failed on a full disk: {err}")
            raise WorkspaceError(f"git {args[0]} failed in {self.root}: {err}")
        return proc.stdout

    def update_ref(self, ref: str, new: str, old: str | None = None, *, message: str = "") -> None:
        """`git update-ref`, patient with a lock another git process holds for a moment, and
        rid of one a killed run left on a ref of its own (a SIGKILL or a power cut during an
        update leaves `<ref>.lock`, and git then refuses the ref for good)."""
        args = [
            "update-ref",
            *(["-m", message] if message else []),
            ref,
            new,
            *([old] if old else []),
        ]
        for attempt in range(LOCK_TRIES):
            try:
                self.git(*args)
                return
            except WorkspaceError as e:
                held = "File exists" in str(e) or "Unable to create" in str(e)  # not a moved ref
                if not held or attempt == LOCK_TRIES - 1:
                    raise
                self._clear_stale_lock(ref)
                time.sleep(LOCK_PAUSE_S * (attempt + 1))

    def _clear_stale_lock(self, ref: str) -> None:
        """Remove `<ref>.lock` of one of this run's refs once it is older than a git update takes."""
        if not (ref == self.branch_ref or ref.startswith(f"refs/autoresearch/{self.tag}/")):
            return
        lock = Path(self.git("rev-parse", "--git-path", f"{ref}.lock").decode().strip())
        lock = lock if lock.is_absolute() else self.root / lock
        with contextlib.suppress(FileNotFoundError):
            if time.time() - lock.stat().st_mtime > STALE_LOCK_S:
                lock.unlink()

    def clear_stale_locks(self) -> int:
        """At a night's start, under the run's own lock: every lock on this run's refs, whatever
        its age. Only this run's process updates them, and it holds the run's lock: a lock there
        now is a killed process's (a supervisor that resumes at once finds it seconds old)."""
        cleared = 0
        common = Path(self.git("rev-parse", "--git-common-dir").decode().strip())
        common = common if common.is_absolute() else self.root / common
        folder = common / "refs" / "autoresearch" / self.tag
        locks = [common / f"{self.branch_ref}.lock", *folder.rglob("*.lock")]
        for lock in locks:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
                cleared += 1
        return cleared

    def rev(self, ref: str) -> str | None:
        proc = subprocess.run(
            ["git", "-C", str(self.root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    # -- the run branch ---------------------------------------------------
    def start(self) -> str:
        """Create the run branch at HEAD (if new) and return the commit it starts from."""
        head = self.rev("HEAD")
        if head is None:
            raise WorkspaceError(
                f"{self.root} has no commits — commit your files, then start the run"
            )
        existing = self.rev(self.branch_ref)
        if existing is None:
            self.update_ref(self.branch_ref, head, "0" * 40)
            existing = head
        exclude = Path(self.git("rev-parse", "--git-path", "info/exclude").decode().strip())
        exclude = exclude if exclude.is_absolute() else self.root / exclude
        exclude.parent.mkdir(parents=True, exist_ok=True)
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if "/.autoresearch/" not in lines:
            with exclude.open("a") as f:
                f.write("/.autoresearch/\n")
        return existing

    def best(self) -> str:
        sha = self.rev(self.branch_ref)
        if sha is None:
            raise WorkspaceError(
                f"run branch {self.branch} is gone — was it deleted? recreate it or start a new tag"
            )
        return sha

    def fast_forward(self, candidate: str, expected_old: str) -> None:
        """Move the run branch from `expected_old` to `candidate`, atomically."""
        self.update_ref(self.branch_ref, candidate, expected_old, message="autoresearch: keep")

    def merge(
        self,
        candidate: str,
        parent: str,
        description: str,
        hypothesis: str,
        trailers: dict[str, str],
    ) -> str:
        """Commit the candidate's exact tree on `parent` with provenance trailers; fast-forward to it."""
        tree = self.tree(candidate)
        subject, why = sanitize.commit(sanitize.field(description)), sanitize.commit(hypothesis)
        body = f"{subject}\n\n" + (f"{why}\n\n" if why.strip() else "")
        message = body + "\n".join(f"{k}: {v}" for k, v in trailers.items()) + "\n"
        commit = self.git("commit-tree", tree, "-p", parent, "-m", message).decode().strip()
        self.fast_forward(commit, parent)
        return commit

    def is_merge_of(self, head: str, candidate: str, parent: str) -> bool:
        """Whether `head` already is the merge of `candidate` (same tree, same parent)."""
        if head == candidate:
            return True
        out = (
            self.git("rev-parse", f"{head}^{{tree}}", f"{candidate}^{{tree}}", f"{head}^@")
            .decode()
            .split()
        )
        return out[0] == out[1] and out[2:] == [parent]

    def rebase(self, candidate: str, onto: str, experiment: int) -> tuple[str, str] | None:
        """The candidate's change replayed on `onto` (a newer best): (commit, diff), or None
        when it conflicts with what was merged since the candidate forked.

        A three-way merge of trees (`git merge-tree`; the merge base is the candidate's
        parent, an ancestor of `onto`); nothing touches a working tree or the index.
        """
        proc = subprocess.run(
            [
                "git",
                "-C",
                str(self.root),
                "merge-tree",
                "--write-tree",
                "--no-messages",
                onto,
                candidate,
            ],
            capture_output=True,
            env={**os.environ, **_GIT_ENV},
        )
        if proc.returncode == 1:
            return None
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise WorkspaceError(f"git merge-tree failed in {self.root}: {err}")
        tree = proc.stdout.decode().split()[0]
        message = self.message(candidate)
        commit = self.git("commit-tree", tree, "-p", onto, "-m", message).decode().strip()
        self.update_ref(self.candidate_ref(experiment), commit)
        return commit, self.diff(onto, commit)

    def message(self, commit: str) -> str:
        """The commit message of `commit`."""
        return self.git("log", "-1", "--format=%B", commit).decode()

    def landed(self, since: str, head: str) -> set[str]:
        """The commits on `head` that `since` does not hold (what merged meanwhile)."""
        return set(self.git("rev-list", f"{since}..{head}").decode().split())

    def tree(self, commit: str) -> str:
        return self.git("rev-parse", f"{commit}^{{tree}}").decode().strip()

    def first_parent(self, commit: str) -> str:
        """The commit `commit` was made (or merged) onto."""
        return self.git("rev-parse", f"{commit}^").decode().strip()

    def uncommitted(self) -> list[str]:
        """The implementation's files changed, added or new in the working tree and not
        committed (matched as the contract matches them, not as git's pathspecs would)."""
        out = self.git("status", "--porcelain=v1", "-z", "--untracked-files=all").decode()
        entries, names = iter(out.split("\0")), []
        for entry in entries:
            if len(entry) > 3 and matches_any(entry[3:], self.impl.paths):
                names.append(entry[3:])
            if entry[:1] in ("R", "C"):
                next(entries, None)  # a rename's or copy's old path follows
        return names

    def candidate_ref(self, experiment: int) -> str:
        return f"refs/autoresearch/{self.tag}/exp-{experiment:04d}"

    # -- trees ------------------------------------------------------------
    def export(self, commit: str, dest: Path, *, writable_by_all: bool = False) -> None:
        """Write the tree of `commit` into `dest` (no .git)."""
        unpack(self.archive(commit), dest, writable_by_all=writable_by_all)

    def archive(self, commit: str) -> bytes:
        """The tree of `commit` as a tar."""
        return self.git("archive", "--format=tar", commit)

    def diff(self, old: str, new: str) -> str:
        return self.git("diff", "--no-color", "--no-ext-diff", "--binary", old, new).decode(
            errors="replace"
        )

    def _batch(self, specs: list[str]) -> list[bytes | None]:
        """Contents of many objects in one `git cat-file --batch` (None for a missing one)."""
        if not specs:
            return []
        out = self.git("cat-file", "--batch", input="".join(f"{x}\n" for x in specs).encode())
        blobs: list[bytes | None] = []
        pos = 0
        for _ in specs:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            if header[-1] == b"missing":
                blobs.append(None)
                pos = end + 1
                continue
            size = int(header[2])
            blobs.append(out[end + 1 : end + 1 + size])
            pos = end + 1 + size + 1
        return blobs

    def _impl_blobs(self, commit: str) -> dict[str, bytes]:
        """The implementation files at `commit` (commits are immutable: cached)."""
        if commit not in self._blob_cache:
            listing = self.git("ls-tree", "-r", "-z", "--name-only", commit).decode().split("\0")
            paths = [p for p in listing if p and matches_any(p, self.impl.paths)]
            blobs = self._batch([f"{commit}:{p}" for p in paths])
            if len(self._blob_cache) >= 4:  # the best and the latest candidates are asked again
                del self._blob_cache[next(iter(self._blob_cache))]
            self._blob_cache[commit] = {
                p: b for p, b in zip(paths, blobs, strict=True) if b is not None
            }
        return self._blob_cache[commit]

    def added(self, parent: str, commit: str) -> tuple[str, ...]:
        """The implementation files at `commit` that `parent` has not (known from its freeze, or
        one git process)."""
        if (known := self._added.pop((parent, commit), None)) is not None:
            return known
        out = self.git("diff-tree", "-r", "-z", "--name-only", "--diff-filter=A", parent, commit)
        return tuple(p for p in out.decode().split("\0") if p and matches_any(p, self.impl.paths))

    def implementation_files(self, commit: str, limit: int = 200_000) -> dict[str, str]:
        """The text of each implementation file at `commit` (what an agent is shown)."""
        return {
            p: data[:limit].decode(errors="replace")
            for p, data in self._impl_blobs(commit).items()
            if b"\0" not in data[:8192]
        }

    def implementation_paths(self, commit: str) -> list[str]:
        """The implementation's files at `commit`, repo-relative."""
        return sorted(self._impl_blobs(commit))

    def lines_of_code(self, commit: str) -> int:
        """Non-blank lines in the implementation files at `commit` (the simplicity rule)."""
        return sum(
            sum(1 for ln in data.decode(errors="replace").splitlines() if ln.strip())
            for data in self._impl_blobs(commit).values()
        )

    # -- freezing a proposal ----------------------------------------------
    def freeze(
        self,
        scratch: Path,
        parent: str,
        message: str,
        experiment: int,
        hidden: tuple[str, ...] = (),
    ) -> tuple[str, str]:
        """Validate the edits in `scratch` against `parent`; commit them; return (commit, diff).

        `hidden`: paths the proposer never saw; they stay as `parent` has them.
        Raises ProposalRefused when the change breaks a rule.
        """
        keep = [f":(exclude,literal){p}" for p in hidden]
        with tempfile.TemporaryDirectory(prefix="autoresearch-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self.git("read-tree", parent, env=env)
            self.git("--work-tree", str(scratch), "add", "-A", "--", ".", *keep, env=env)
            changes = self._changes(parent, env)
            rules.validate(changes, self.impl, self._sizes, self._batch)
            new = tuple(
                c.path for c in changes if c.status == "A" and matches_any(c.path, self.impl.paths)
            )
            tree = self.git("write-tree", env=env).decode().strip()
        made = self.git("commit-tree", tree, "-p", parent, "-m", sanitize.commit(message))
        commit = made.decode().strip()
        diff = self.diff(parent, commit)
        if (size := len(diff.encode())) > self.impl.max_diff_bytes:
            raise ProposalRefused(
                f"diff is {size} bytes, over implementation.max_diff_bytes={self.impl.max_diff_bytes}"
            )
        self.update_ref(self.candidate_ref(experiment), commit)
        if len(self._added) >= 64:  # one never run (a duplicate, a screened-out one)
            del self._added[next(iter(self._added))]
        self._added[(parent, commit)] = new  # asked for once, when it runs
        return commit, diff

    def _sizes(self, blobs: list[str]) -> list[int]:
        """Sizes of many objects in one `git cat-file --batch-check`."""
        checks = self.git(
            "cat-file", "--batch-check", input="".join(f"{b}\n" for b in blobs).encode()
        )
        return [int(line.split()[2]) for line in checks.decode().splitlines()]

    def _changes(self, parent: str, env: dict[str, str]) -> list[Change]:
        raw = self.git(
            "diff-index", "--cached", "--raw", "-z", "--no-renames", parent, env=env
        ).decode()
        fields = raw.split("\0")
        out = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta:
                continue
            old_mode, new_mode, _old, new_blob, status = meta.lstrip(":").split()
            out.append(Change(path, status[0], old_mode, new_mode, new_blob))
        return out
