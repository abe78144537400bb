"""The tree a night grows: which experiment each proposal started from, drawn for `status`,
`log` and the report.

Every experiment records its parent commit. The experiment that first made a commit
names it (a duplicate can share its sha); the night's starting commit is the
baseline's. A greedy night is a chain from the best; a tree search (`[search] kind =
"tree"`) starts proposals from several parents, and the drawing shows which.
"""

from __future__ import annotations

from orchestrator import sanitize
from orchestrator.experiment import Experiment

LIMIT = 200
"""Most experiments drawn (the earliest first); the rest are counted."""


def made_by(exps: list[Experiment]) -> dict[str, int]:
    """Commit sha → the experiment that first made it (the night's start: the baseline)."""
    out: dict[str, int] = {exps[0].parent: 0} if exps else {}
    for x in exps:
        for sha in (x.commit_sha, x.merged_sha):
            if sha:
                out.setdefault(sha, x.id)
    return out


def parents(exps: list[Experiment]) -> dict[int, int]:
    """Experiment id → the id it started from (the baseline has none)."""
    makers = made_by(exps)
    return {e.id: makers[e.parent] for e in exps if e.id and e.parent in makers}


def draw(exps: list[Experiment], best: int | None = None) -> list[str]:
    """One line per experiment, each under the one it started from (`*` marks the best)."""
    if not exps:
        return []
    up = parents(exps)
    children: dict[int, list[int]] = {}
    for child, parent in up.items():
        children.setdefault(parent, []).append(child)
    by_id = {e.id: e for e in exps}
    roots = [e.id for e in exps if e.id not in up]
    lines: list[str] = []

    def walk(node: int, lead: str, branch: str) -> None:
        if len(lines) >= LIMIT:
            return
        lines.append(lead + branch + _label(by_id[node], node == best))
        kids = sorted(children.get(node, []))
        below = lead + ("" if not branch else "   " if branch.startswith("└") else "│  ")
        for i, kid in enumerate(kids):
            walk(kid, below, "└─ " if i == len(kids) - 1 else "├─ ")

    for root in roots:
        walk(root, "", "")
    if len(exps) > len(lines):
        lines.append(f"… {len(exps) - len(lines)} more")
    return lines


def _label(e: Experiment, best: bool) -> str:
    status = e.status or f"({e.phase})"
    value = "" if e.metric is None else f" {e.metric:.6g}"
    mark = " *" if best else ""
    text = sanitize.field(e.description)[:50] if e.id else "baseline"
    return f"#{e.id} {status}{value}{mark}  {text}"
