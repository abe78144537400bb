"""A run as text and data: the status table, the summary (JSON), the reasoning trail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from orchestrator import sanitize
from orchestrator.contract.model import FORGEABLE, Contract
from orchestrator.experiment import (
    STATUSES,
    Experiment,
    RunInfo,
    baseline_metric,
    best_holder,
    experiment_dir,
)
from orchestrator.morning import tree
from orchestrator.night.stops import best_so_far


def steered(steering: list[tuple[float, str]]) -> list[tuple[str, str]]:
    """What a person told the night (`Ledger.steering()`): when, in UTC to the minute, and what."""
    return [(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at)), text) for at, text in steering]


def held(exps: list[Experiment]) -> list[Experiment]:
    """Flagged winners held off the run branch, waiting for a person (`autoresearch accept`)."""
    return [e for e in exps if e.id > 0 and e.status == "keep" and not e.merged and e.flags
            and e.phase == "done"]  # fmt: skip


def waiting(tag: str, exps: list[Experiment]) -> str | None:
    """The line that says what waits for a person, if anything does."""
    ids = [e.id for e in held(exps)]
    if not ids:
        return None
    which = ", ".join(f"#{i}" for i in ids)
    return (f"waiting for a person: {which} won but made a flagged move — read its diff "
            f"(`autoresearch log {tag}`), then `autoresearch accept {tag} {ids[0]}`")  # fmt: skip


def _fmt(v: float | None, spec: str = ".6g") -> str:
    return "-" if v is None else format(v, spec)


def status_table(info: RunInfo, exps: list[Experiment], contract: Contract) -> str:
    """The run's headline, then one row per experiment (a shared-mode run says it can be forged)."""
    metric, goal = contract.metric.name, contract.metric.goal
    base = baseline_metric(exps)
    gpu = any(e.peak_vram_bytes is not None for e in exps)
    slots = info.slots > 1 or any(e.slot for e in exps)
    nodes = any(e.node for e in exps)
    header: tuple[str, ...] = (
        "#",
        "status",
        metric,
        "Δ baseline",
        "wall s",
        "cpu s",
        "mem MiB",
        "disk MiB",
        "exit",
    )
    flagged = any(e.flags for e in exps)
    header += ("vram MiB",) * gpu + ("slot",) * slots + ("node",) * nodes + ("flags",) * flagged
    services = _service_columns(contract)
    header += tuple(h for h, _ in services)
    rows: list[tuple[str, ...]] = [(*header, "description", "reason")]
    for e in exps:
        delta = "-" if e.metric is None or base is None else f"{e.metric - base:+.6g}"
        status = e.status or f"({e.phase})"
        if e.status == "keep" and e.id > 0 and not e.merged:
            status = "keep*"
        mem = None if e.peak_memory_bytes is None else e.peak_memory_bytes / 1024**2
        disk = None if e.workspace_bytes is None else e.workspace_bytes / 1024**2
        ended = (
            "-" if e.exit_code is None else (f"sig {e.signal}" if e.signal else str(e.exit_code))
        )
        vram = None if e.peak_vram_bytes is None else e.peak_vram_bytes / 1024**2
        extra = (_fmt(vram, ".0f"),) * gpu + (_fmt(e.slot, "d"),) * slots + (e.node or "-",) * nodes
        extra += (str(len(e.flags)) if e.flags else "-",) * flagged
        extra += tuple(_fmt(e.metrics.get(k), ".0f") for _, k in services)
        rows.append(
            (
                str(e.id),
                status,
                _fmt(e.metric),
                delta,
                _fmt(e.wall_s, ".1f"),
                _fmt(e.cpu_s, ".1f"),
                _fmt(mem, ".0f"),
                _fmt(disk, ".1f"),
                ended,
                *extra,
                sanitize.field(e.description)[:40],
                sanitize.field(e.reason or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    head = _headline(info, exps, metric, goal, base)
    warn = [FORGEABLE] if contract.forgeable else []
    return "\n".join([*warn, head, *lines, *_footer(info, exps, contract)])


def _footer(info: RunInfo, exps: list[Experiment], contract: Contract) -> list[str]:
    """What waits for a person, each portfolio member's share, and the search tree."""
    wait = waiting(info.tag, exps)
    members = [_member_line(m) for m in agent_yields(exps, contract)]
    grown = search_tree(exps, contract)
    drawn = ["", "search tree (each experiment under the one it started from; * the best):", *grown]
    return [*([wait] if wait else []), *members, *(drawn if grown else [])]


def search_tree(exps: list[Experiment], contract: Contract) -> list[str]:
    """The tree a tree search grew, drawn (a greedy night's is a chain: not drawn)."""
    if contract.search.kind != "tree":
        return []
    holder = best_holder(exps)
    return tree.draw(exps, holder.id if holder else None)


def agent_yields(exps: list[Experiment], contract: Contract) -> list[dict[str, Any]]:
    """A portfolio's members: each one's share of the proposals and what it yielded."""
    from orchestrator.agents.config import PortfolioAgentConfig
    from orchestrator.agents.portfolio import yields

    if not isinstance(contract.agent, PortfolioAgentConfig):
        return []
    got = yields(exps, contract.metric.goal, contract.agent.labels())
    total = sum(y.proposals for y in got.values()) or 1
    return [{"member": m, "proposals": y.proposals, "share": y.proposals / total, "kept": y.kept,
             "gain": y.gain, "gain_per_sandbox_s": y.per_s, "cost_usd": y.cost_usd}
            for m, y in got.items()]  # fmt: skip


def _member_line(m: dict[str, Any]) -> str:
    return (f"agent {m['member']}: {m['proposals']} proposals ({m['share']:.0%}), {m['kept']} "
            f"kept, gain {m['gain']:.6g} ({m['gain_per_sandbox_s']:.3g} per sandbox-second), "
            f"${m['cost_usd']:.2f}")  # fmt: skip


def _service_columns(contract: Contract) -> list[tuple[str, str]]:
    """One column per service: its tokens (a Messages API) or its requests, as the gateway counted."""
    return [
        (f"{s.name} tok", f"gateway.{s.name}.tokens")
        if s.counts_tokens
        else (f"{s.name} req", f"gateway.{s.name}.requests")
        for s in contract.sandbox.services
    ]


def _headline(
    info: RunInfo, exps: list[Experiment], metric: str, goal: str, base: float | None
) -> str:
    kept = [e for e in exps if e.holds_best]
    counts = {s: sum(1 for e in exps if e.status == s) for s in STATUSES}
    head = f"run {info.tag} ({goal} {metric}): " + ", ".join(
        f"{v} {k}" for k, v in counts.items() if v or k != "duplicate"
    )
    if kept and base is not None:
        head += f"; best {kept[-1].metric:.6g} (baseline {base:.6g})"
    if info.duty_cycle is not None:
        head += f"; {info.slots} slot(s), duty cycle {info.duty_cycle:.0%}"
    if info.stopped:
        head += f"; stopped: {info.stopped}"
    return head


# -- the night as data (status --json, report --json, the HTML report, the live view) --
def overlaps(exps: list[Experiment]) -> dict[int, list[int]]:
    """For each experiment, those whose sandbox work overlapped its own (what
    `Ledger.concurrent_with` says of one), for all of them in one sweep by start time."""
    ran = sorted(
        (e.ran_from, e.ran_to if e.ran_to is not None else 1e18, e.id)
        for e in exps
        if e.ran_from is not None
    )
    out: dict[int, list[int]] = {e.id: [] for e in exps}
    for i, (start, end, a) in enumerate(ran):
        for other_start, other_end, b in ran[i + 1 :]:
            if other_start >= end:
                break
            if start < other_end:
                out[a].append(b)
                out[b].append(a)
    return {k: sorted(v) for k, v in out.items()}


def crash_kind(reason: str | None) -> str:
    """The kind of a crash, from its recorded reason: 'timeout', 'out of memory', 'exit code 1'..."""
    return (reason or "unknown").split(":")[0].split(" (")[0].strip()


def summary(
    info: RunInfo,
    exps: list[Experiment],
    contract: Contract,
    concurrent: dict[int, list[int]] | None = None,
) -> dict[str, Any]:
    """Everything a morning reader needs, as plain JSON-able data."""
    m = contract.metric
    base = baseline_metric(exps)
    bests = best_so_far(exps)
    best = best_holder(exps)
    starts = [e.started for e in exps]
    ends = [e.finished for e in exps if e.finished is not None]
    gpu_s = sum((e.wall_s or 0.0) for e in exps) * contract.sandbox.gpus
    rows = [
        _experiment_row(e, running_best, base, concurrent or {})
        for e, running_best in zip(exps, bests, strict=True)
    ]
    return {
        "tag": info.tag,
        "isolation": contract.evaluator.isolation,
        "forgeable": contract.forgeable,
        "metric": m.name,
        "goal": m.goal,
        "baseline": base,
        "best": best.metric if best else None,
        "best_experiment": best.id if best else None,
        "delta": None
        if best is None or base is None or best.metric is None
        else best.metric - base,
        "counts": _outcome_counts(exps, base),
        "crashes": _crash_kinds(exps),
        "experiments_run": len(exps) - 1 if exps else 0,
        "wall_s": (max(ends) - min(starts)) if ends else 0.0,
        "active_s": info.active_s,
        "accelerator_hours": gpu_s / 3600,
        "gpus_per_experiment": contract.sandbox.gpus,
        "cost_usd": sum(e.cost_usd or 0.0 for e in exps),
        "stopped": info.stopped,
        "held": [e.id for e in held(exps)],
        "slots": info.slots,
        "duty_cycle": info.duty_cycle,
        "base_commit": info.base_commit,
        "agents": agent_yields(exps, contract),
        "tree": search_tree(exps, contract),
        "experiments": rows,
    }


def _outcome_counts(exps: list[Experiment], base: float | None) -> dict[str, int]:
    """Experiments per status, every status named even at zero."""
    counts: dict[str, int] = {s: sum(1 for e in exps if e.status == s) for s in STATUSES}
    counts["keep"] -= 1 if base is not None else 0  # the baseline is not a win
    return counts


def _crash_kinds(exps: list[Experiment]) -> dict[str, int]:
    """Crashes per kind, in the order each kind first happened."""
    crashes: dict[str, int] = {}
    for e in exps:
        if e.status == "crash":
            crashes[crash_kind(e.reason)] = crashes.get(crash_kind(e.reason), 0) + 1
    return crashes


def _experiment_row(
    e: Experiment, running_best: float | None, base: float | None, concurrent: dict[int, list[int]]
) -> dict[str, Any]:
    """One experiment as summary data; `running_best` is the best once it had finished."""
    return {
        "id": e.id,
        "status": e.status,
        "phase": e.phase,
        "metric": e.metric,
        "delta": None if e.metric is None or base is None or e.id == 0 else e.metric - base,
        "best_after": running_best,
        "merged": e.merged,
        "commit": e.commit_sha,
        "merged_sha": e.merged_sha,
        "description": e.description,
        "hypothesis": e.hypothesis,
        "reason": e.reason,
        "wall_s": e.wall_s,
        "cpu_s": e.cpu_s,
        "peak_memory_bytes": e.peak_memory_bytes,
        "peak_vram_bytes": e.peak_vram_bytes,
        "cost_usd": e.cost_usd,
        "gateway": {k: v for k, v in e.metrics.items() if k.startswith("gateway.")},
        "slot": e.slot,
        "node": e.node,
        "ran_with": concurrent.get(e.id, []),
        "rebased_from": e.rebased_from,
        "infra_retries": e.infra_retries,
        "flags": e.flags,
        "samples": e.samples,
    }


def reasoning_trail(exps: list[Experiment], ledger_dir: Path, metric: str) -> str:
    """`autoresearch log`: one block per experiment — hypothesis, change, outcome."""
    base = baseline_metric(exps)
    waits = held(exps)
    made_by = tree.made_by(exps)
    blocks = []
    for e in exps:
        outcome = e.status or f"({e.phase})"
        if e.status == "keep" and e.id and not e.merged:
            outcome = "keep (not merged)"
        if e in waits:
            outcome = f"keep (held for review: `autoresearch accept {ledger_dir.name} {e.id}`)"
        value = "" if e.metric is None else f"  {metric} {e.metric:.6g}"
        if e.metric is not None and base is not None and e.id:
            value += f" (Δ {e.metric - base:+.6g})"
        cost = f"  ${e.cost_usd:.4f}" if e.cost_usd is not None else ""
        wall = f"  {e.wall_s:.1f} s" if e.wall_s is not None else ""
        wall += f" on {e.node}" if e.node else ""
        lines = [
            f"#{e.id} {outcome}{value}{wall}{cost}",
            f"  change:     {sanitize.field(e.description)}",
        ]
        if e.hypothesis and e.id:
            lines.append(f"  hypothesis: {sanitize.field(e.hypothesis)}")
        if e.id and e.parent in made_by:  # the tree a tree search grows, one edge a block
            lines.append(f"  from:       #{made_by[e.parent]}")
        stat = diff_stat(experiment_dir(ledger_dir, e.id) / "diff.patch")
        if stat:
            lines.append(f"  files:      {stat}")
        if e.reason:
            lines.append(f"  outcome:    {sanitize.field(e.reason)}")
        if e.flags:
            lines.append(f"  flagged:    {sanitize.field('; '.join(e.flags))}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def diff_stat(patch: Path) -> str:
    """'impl.py +3 -1, util.py +1' from a unified diff file ('' when there is none)."""
    if not patch.exists():
        return ""
    files: dict[str, list[int]] = {}
    current = None
    for line in patch.read_text(errors="replace").splitlines():
        if line.startswith("+++ "):
            current = line[4:].removeprefix("b/")
            files.setdefault(current, [0, 0])
        elif current and line.startswith("+") and not line.startswith("+++"):
            files[current][0] += 1
        elif current and line.startswith("-") and not line.startswith("---"):
            files[current][1] += 1
    return ", ".join(f"{f} +{a} -{d}" for f, (a, d) in files.items())
