"""Plain-text views of a run: the status table."""

from __future__ import annotations

from orchestrator.ledger import Experiment, RunInfo


def _fmt(v: float | None, spec: str = ".6g") -> str:
    return "-" if v is None else format(v, spec)


def status_table(info: RunInfo, exps: list[Experiment], metric: str, goal: str) -> str:
    base = next((e.metric for e in exps if e.id == 0 and e.status == "keep"), None)
    gpu = any(e.peak_vram_bytes is not None for e in exps)
    slots = info.slots > 1 or any(e.slot for e in exps)
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
    header += ("vram MiB",) * gpu + ("slot",) * slots
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
        extra = (_fmt(vram, ".0f"),) * gpu + (_fmt(e.slot, "d"),) * slots
        rows.append((str(e.id), status, _fmt(e.metric), delta, _fmt(e.wall_s, ".1f"), _fmt(e.cpu_s, ".1f"),
                     _fmt(mem, ".0f"), _fmt(disk, ".1f"), ended, *extra, e.description[:40],
                     (e.reason or "")[:60]))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    kept = [e for e in exps if e.holds_best]
    counts = {
        s: sum(1 for e in exps if e.status == s) for s in ("keep", "discard", "crash", "refused")
    }
    head = f"run {info.tag} ({goal} {metric}): " + ", ".join(f"{v} {k}" for k, v in counts.items())
    if kept and base is not None:
        head += f"; best {kept[-1].metric:.6g} (baseline {base:.6g})"
    if info.duty_cycle is not None:
        head += f"; {info.slots} slot(s), duty cycle {info.duty_cycle:.0%}"
    if info.stopped:
        head += f"; stopped: {info.stopped}"
    return "\n".join([head, *lines])
