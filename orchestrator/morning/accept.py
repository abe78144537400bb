"""`autoresearch accept <tag>`: the night's result into the user's branch as one commit.

The final diff (baseline → best) is three-way merged onto the checked-out branch,
committed on top of it with a message that sums up the night, and the branch is
fast-forwarded with `git merge --ff-only` (so git itself guards the working tree).
Refused, touching nothing, when the tree is dirty, HEAD is detached, or the branch
moved since the run started in a way that conflicts. The run branch keeps the
full history.
"""

from __future__ import annotations

import subprocess

from orchestrator import sanitize
from orchestrator.errors import UserError
from orchestrator.experiment import Experiment, RunInfo, best_holder
from orchestrator.workspace import Workspace


def message(info: RunInfo, exps: list[Experiment], metric: str) -> str:
    base = next(e for e in exps if e.id == 0)
    kept = [e for e in exps if e.holds_best and e.id > 0]
    best = best_holder(kept)
    assert best is not None and base.metric is not None and best.metric is not None
    lines = [
        f"autoresearch {info.tag}: {metric} {base.metric:.6g} → {best.metric:.6g} ({best.metric - base.metric:+.6g})",
        "",
        f"{len(kept)} kept of {len(exps) - 1} experiments:",
        *(f"- #{e.id} {sanitize.field(e.description)} ({metric} {e.metric:.6g})" for e in kept),
        "",
        f"The run branch autoresearch/{info.tag} keeps every step, with provenance trailers.",
        "",
        f"Autoresearch-Run: {info.tag}",
        f"Autoresearch-Best: {best.merged_sha}",
    ]
    body, trailers = "\n".join(lines[:-3]), "\n".join(lines[-3:])
    return sanitize.commit(body) + "\n" + trailers + "\n"


def _target(
    info: RunInfo, exps: list[Experiment], metric: str, experiment: int | None
) -> tuple[str, str, str]:
    """(the commit to accept, the commit it is a change of, the message)."""
    if experiment is None:
        kept = [e for e in exps if e.holds_best and e.id > 0 and e.merged_sha]
        if not kept:
            raise UserError(f"run {info.tag} kept no change — there is nothing to accept")
        holder = best_holder(kept)
        assert holder is not None and holder.merged_sha is not None
        best = holder.merged_sha
        return best, info.base_commit, message(info, exps, metric)
    e = next((x for x in exps if x.id == experiment), None)
    held = e is not None and e.id > 0 and e.status == "keep" and not e.merged and bool(e.flags)
    if e is None or not held or not e.commit_sha:
        raise UserError(
            f"experiment {experiment} of run {info.tag} is not a winner held for review — "
            "see `autoresearch log` (without an experiment, accept takes the night's result)"
        )
    flags = "; ".join(e.flags) or "none"
    body = sanitize.commit(
        f"autoresearch {info.tag}: held experiment #{e.id}, accepted after review\n\n"
        f"- {sanitize.field(e.description)} ({metric} {e.metric:.6g})\n"
        f"- flagged: {sanitize.field(flags)}"
    )
    return (
        e.commit_sha,
        e.parent,
        f"{body}\n\nAutoresearch-Run: {info.tag}\nAutoresearch-Held: {e.id}\n",
    )


def accept(
    ws: Workspace, info: RunInfo, exps: list[Experiment], metric: str, experiment: int | None = None
) -> tuple[str, str]:
    """Commit the night's result (or a winner held for review) onto the checked-out branch;
    (branch, new commit)."""
    best, merge_base, text = _target(info, exps, metric, experiment)
    branch = _git(
        ws,
        "symbolic-ref",
        "--quiet",
        "--short",
        "HEAD",
        fail="HEAD is detached — check out the branch to accept into",
    )
    if branch == ws.branch:
        raise UserError(
            f"{branch} is the run branch itself — check out your own branch to accept into"
        )
    if _git(ws, "status", "--porcelain", "--untracked-files=no"):
        raise UserError(
            f"your working tree has uncommitted changes on {branch} — commit or stash them, then accept"
        )
    head = _git(ws, "rev-parse", "HEAD")
    proc = subprocess.run(
        [
            "git",
            "-C",
            str(ws.root),
            "merge-tree",
            "--write-tree",
            "--no-messages",
            f"--merge-base={merge_base}",
            head,
            best,
        ]
        if _has_merge_base_option(ws)
        else ["git", "-C", str(ws.root), "merge-tree", "--write-tree", "--no-messages", head, best],
        capture_output=True,
        text=True,
    )
    if proc.returncode == 1:
        files = [ln.split("\t")[-1] for ln in proc.stdout.splitlines()[1:] if "\t" in ln]
        where = f" ({', '.join(sorted(set(files))[:5])})" if files else ""
        raise UserError(
            f"{branch} changed since the run started in a way that conflicts with its result{where} — "
            f"merge autoresearch/{info.tag} by hand, or accept onto {info.base_commit[:12]}"
        )
    if proc.returncode != 0:
        raise UserError(f"git merge-tree failed: {proc.stderr.strip()}")
    tree = proc.stdout.split()[0]
    if tree == _git(ws, "rev-parse", f"{head}^{{tree}}"):
        raise UserError(f"{branch} already holds the result of run {info.tag} — nothing to accept")
    commit = _git(ws, "commit-tree", tree, "-p", head, "-m", text)
    _git(ws, "merge", "--ff-only", "--quiet", commit, fail="git could not fast-forward your branch")
    return branch, commit


def _has_merge_base_option(ws: Workspace) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(ws.root), "merge-tree", "-h"], capture_output=True, text=True
    )
    return "--merge-base" in proc.stdout + proc.stderr


def _git(ws: Workspace, *args: str, fail: str | None = None) -> str:
    proc = subprocess.run(["git", "-C", str(ws.root), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(fail or f"git {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()
