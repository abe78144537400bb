"""The morning report: `report.html` (styles, plot and the final diff inline; nothing is
fetched from the network) and `progress.png` in the run folder.

With 1,000 rows it stays small: each experiment's diff and log tail are pages of
their own beside it (`pages.py`), linked from its row and loaded on demand; a
filter shows one status at a time. While the run is live the page reloads itself
(`report --serve` rewrites it as the night goes, `serve.py`).

The plot is the one autoresearch users know: every experiment by index, discards
grey, keeps green, crashes marked, the running best as a step line, each keep
annotated with its description.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import sanitize
from orchestrator.contract.model import FORGEABLE
from orchestrator.experiment import STATUSES, best_holder
from orchestrator.ledger import Ledger
from orchestrator.morning.pages import esc as _esc
from orchestrator.morning.pages import highlight as _highlight
from orchestrator.morning.pages import write_pages
from orchestrator.morning.summary import overlaps, steered, summary
from orchestrator.workspace import Workspace

if TYPE_CHECKING:
    from matplotlib.axes import Axes

REFRESH_S = 15
"""How often a live run's page reloads itself."""


def plot_progress(data: dict[str, Any], path: Path) -> Path:
    """progress.png: metric per experiment, the running best as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["experiments"]
    # Every text drawn as it is: a description holding `$$` is not mathtext (which failed the
    # whole report) nor, under a user's matplotlibrc, LaTeX (which would run it).
    with matplotlib.rc_context(
        {"text.usetex": False, "text.parse_math": False, "axes.formatter.use_mathtext": False}
    ):
        fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
        try:
            keeps = _plot_outcomes(ax, rows, data["goal"])
            _plot_best(ax, rows, keeps)
            _label_axes(ax, data)
            fig.tight_layout()
            fig.savefig(path)
        finally:
            plt.close(fig)
    return path


def _plot_outcomes(ax: Axes, rows: list[dict[str, Any]], goal: str) -> list[dict[str, Any]]:
    """Discards, keeps and crashes as points; the keeps drawn (merged ones and the baseline)."""
    values = [r["metric"] for r in rows if r["metric"] is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.08 or 1.0
    # A crash has no metric: it is marked just past the worst end of the axis.
    crash_y = high + pad if goal == "min" else low - pad

    def points(status: str) -> tuple[list[int], list[float]]:
        picked = [r for r in rows if r["status"] == status and r["metric"] is not None]
        return [r["id"] for r in picked], [r["metric"] for r in picked]

    ax.scatter(*points("discard"), color="#9e9e9e", s=22, label="discard", zorder=2)
    keeps = [
        r
        for r in rows
        if r["status"] == "keep" and r["metric"] is not None and (r["merged"] or r["id"] == 0)
    ]
    ax.scatter(
        [r["id"] for r in keeps],
        [r["metric"] for r in keeps],
        color="#2e7d32",
        s=40,
        label="keep",
        zorder=3,
    )
    crashed = [r["id"] for r in rows if r["status"] in ("crash", "refused")]
    if crashed:
        ax.scatter(
            crashed,
            [crash_y] * len(crashed),
            marker="x",
            color="#c62828",
            s=36,
            label="crash / refused",
            zorder=3,
        )
    return keeps


def _plot_best(ax: Axes, rows: list[dict[str, Any]], keeps: list[dict[str, Any]]) -> None:
    """The running best as a step line, each keep after the baseline named by its change."""
    steps = [(r["id"], r["best_after"]) for r in rows if r["best_after"] is not None]
    if steps:
        xs, ys = zip(*steps, strict=True)
        ax.step(
            xs, ys, where="post", color="#2e7d32", linewidth=1.5, alpha=0.8, label="best so far"
        )
    for r in keeps:
        if r["id"] == 0:
            continue
        said = sanitize.terminal(r["description"], one_line=True)
        text = said if len(said) <= 40 else said[:39] + "…"
        ax.annotate(
            text,
            (r["id"], r["metric"]),
            xytext=(4, 8),
            textcoords="offset points",
            fontsize=7,
            rotation=20,
            color="#1b5e20",
            parse_math=False,
        )


def _label_axes(ax: Axes, data: dict[str, Any]) -> None:
    """Axis labels, title, grid and legend."""
    better = "lower" if data["goal"] == "min" else "higher"
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("experiment")
    ax.set_ylabel(f"{data['metric']} ({better} is better)")
    ax.set_title(
        f"run {data['tag']}: {data['counts']['keep']} kept of {data['experiments_run']} experiments"
    )
    ax.grid(alpha=0.25)
    ax.legend(loc="best", fontsize=8)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _num(v: float | None, spec: str = ".6g") -> str:
    return "–" if v is None else format(v, spec)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.muted{color:#666} .warning{background:#fdecea;border:1px solid #c62828;padding:8px 12px;font-weight:600} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:8px 12px;min-width:120px}
.card b{display:block;font-size:18px}
table{border-collapse:collapse;width:100%;font-size:13px} th,td{padding:5px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#fafafa;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.keep td.st{color:#2e7d32;font-weight:600} tr.crash td.st,tr.crash td.st{color:#c62828;font-weight:600}
tr.discard td.st{color:#757575} details{margin:4px 0} summary{cursor:pointer}
pre{overflow:auto;max-height:480px;font-size:12px;background:#f7f7f7;padding:8px;border-radius:6px}
.highlight pre{background:#f7f7f7} img#progress{max-width:100%;border:1px solid #eee;border-radius:8px}
"""

# Marks an image that failed to load, for people and for the browser test; the status
# filter (kept in the address's #status=); a live run's reload. Fetches nothing itself.
SCRIPT = """
document.querySelectorAll('img').forEach(function(img){
  function check(){ if(!img.naturalWidth){ img.classList.add('broken'); console.error('image failed: ' + img.id); } }
  if(img.complete){ check(); } else { img.addEventListener('load', check); img.addEventListener('error', check); }
});
var filter = document.getElementById('status-filter');
function applyFilter(){
  var want = filter.value, shown = 0;
  document.querySelectorAll('tr.exp').forEach(function(tr){
    var on = !want || tr.classList.contains(want);
    tr.style.display = on ? '' : 'none';
    if(on){ shown++; }
  });
  document.getElementById('shown').textContent = shown + ' shown';
}
var asked = /status=([a-z]+)/.exec(location.hash);
if(asked){ filter.value = asked[1]; }
filter.addEventListener('change', function(){ location.hash = filter.value ? 'status=' + filter.value : ''; applyFilter(); });
applyFilter();
var every = Number(document.body.dataset.refresh || 0);
if(every > 0){ setTimeout(function(){ location.reload(); }, every * 1000); }
"""


def _forgeable(d: dict[str, Any]) -> str:
    if not d.get("forgeable"):
        return ""
    return f'<p class="warning" id="forgeable">{_esc(FORGEABLE)}</p>\n'


def _filter() -> str:
    """The status filter above the table (the script applies it)."""
    options = "".join(f"<option value='{s}'>{s}</option>" for s in (*STATUSES, "pending"))
    return (
        "<p><label>show <select id='status-filter'><option value=''>every status</option>"
        f"{options}</select></label> <span class='muted' id='shown'></span></p>"
    )


def _held(d: dict[str, Any]) -> str:
    """What waits for a person: flagged winners held off the run branch."""
    if not d.get("held"):
        return ""
    ids = ", ".join(f"#{i}" for i in d["held"])
    first = d["held"][0]
    return (f"<div class='warning held'>waiting for a person: {ids} won but made a flagged move "
            f"— read its diff, then <code>autoresearch accept {_esc(d['tag'])} {first}</code></div>")  # fmt: skip


def _grown(d: dict[str, Any]) -> str:
    """The search tree (a tree search), what people steered, and the proposers' shared notes."""
    parts = []
    if d.get("tree"):
        parts.append("<h2>The search tree</h2><p class='muted'>each experiment under the one it "
                     "started from; * the best</p><pre class='tree'>" + _esc("\n".join(d["tree"])) + "</pre>")  # fmt: skip
    if d.get("steering"):
        items = "".join(f"<li>{_esc(when)}: {_esc(text)}</li>" for when, text in d["steering"])
        parts.append(f"<h2>Steering</h2><ul>{items}</ul>")
    if d.get("notes"):
        items = "".join(f"<li>#{i}: {_esc(text)}</li>" for i, text in d["notes"])
        parts.append(f"<h2>Shared notes</h2><ul>{items}</ul>")
    return "\n".join(parts) + ("\n" if parts else "")


def render(
    data: dict[str, Any], png: bytes, final_diff: str, links: dict[int, dict[str, str]]
) -> str:
    """The whole page as one string; `links[id]` holds the hrefs of its 'diff' and 'log' pages."""
    rows = [_row(r, links.get(r["id"], {})) for r in data["experiments"]]
    live = data["stopped"] is None
    d = data
    crashes = ", ".join(f"{k}: {v}" for k, v in d["crashes"].items()) or "none"
    png64 = base64.b64encode(png).decode()
    final = (
        _highlight(final_diff) if final_diff.strip() else "<p class='muted'>No change was kept.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>autoresearch run {_esc(d["tag"])}</title><style>{STYLE}</style></head>
<body data-refresh="{REFRESH_S if live else 0}">
<h1>Run {_esc(d["tag"])}: {_esc(d["metric"])} ({"lower" if d["goal"] == "min" else "higher"} is better)</h1>
{_forgeable(d)}{_held(d)}<div class="muted">stopped: {_esc(d["stopped"] or "still running or interrupted")} · crashes by reason: {_esc(crashes)} ·
written {_esc(time.strftime("%Y-%m-%d %H:%M:%S"))}{f" · live: reloads every {REFRESH_S} s" if live else ""}</div>
<div class="cards">{_cards(d)}</div>
<img id="progress" alt="progress: {_esc(d["metric"])} per experiment" src="data:image/png;base64,{png64}">
<h2>Every experiment</h2>
{_filter()}
<table id="experiments"><thead><tr><th>#</th><th>status</th><th>{_esc(d["metric"])}</th><th>Δ baseline</th>
<th>change and hypothesis</th><th>reason</th><th>wall s</th><th>cost</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
{_grown(d)}<h2>From the baseline to the best</h2>
{final}
<script>{SCRIPT}</script>
</body></html>
"""


def _row(r: dict[str, Any], link: dict[str, str]) -> str:
    """One experiment's table row, with links to its diff (and a crash's log tail)."""
    status = r["status"] or r["phase"]
    if status == "keep" and r["id"] and not r["merged"]:
        status = "keep (not merged)"
    opened = [
        f" <a class='{kind}' href='{_esc(link[kind])}'>{label}</a>"
        for kind, label in (("diff", "diff"), ("log", "log tail"))
        if link.get(kind)
    ]
    hyp = f"<div class='muted'>{_esc(r['hypothesis'])}</div>" if r["hypothesis"] and r["id"] else ""
    if r.get("flags"):
        hyp += f"<div class='warning flags'>flagged: {_esc('; '.join(r['flags']))}</div>"
    cost = "–" if r["cost_usd"] is None else f"${r['cost_usd']:.4f}"
    delta = "" if r["delta"] is None else f"{r['delta']:+.6g}"
    return (
        f"<tr class='exp {_esc(r['status'] or 'pending')}' id='exp-{r['id']}'><td class='num'>{r['id']}</td>"
        f"<td class='st'>{_esc(status)}</td><td class='num'>{_num(r['metric'])}</td>"
        f"<td class='num'>{delta}</td>"
        f"<td>{_esc(r['description'])}{hyp}{''.join(opened)}</td><td>{_esc(r['reason'] or '')}</td>"
        f"<td class='num'>{_num(r['wall_s'], '.1f')}</td><td class='num'>{cost}</td></tr>"
    )


def _cards(d: dict[str, Any]) -> str:
    """The headline numbers, one card each."""
    duty = "–" if d["duty_cycle"] is None else f"{d['duty_cycle']:.0%} over {d['slots']} slot(s)"
    cards = [
        ("baseline → best", f"{_num(d['baseline'])} → {_num(d['best'])}"),
        ("Δ", "–" if d["delta"] is None else f"{d['delta']:+.6g}"),
        ("keeps", d["counts"]["keep"]),
        ("discards", d["counts"]["discard"]),
        ("crashes", d["counts"]["crash"]),
        ("refused", d["counts"]["refused"]),
        ("duplicates (not run again)", d["counts"]["duplicate"]),
        ("wall time", _duration(d["wall_s"])),
        ("accelerator-hours", f"{d['accelerator_hours']:.2f}"),
        ("cost (agent and services)", f"${d['cost_usd']:.2f}"),
        ("duty cycle", duty),
        *((f"agent {m['member']}", f"{m['share']:.0%} of proposals · {m['kept']} kept · gain "
           f"{m['gain']:.3g}") for m in d.get("agents", [])),
    ]  # fmt: skip
    return "".join(
        f"<div class='card'><span class='muted'>{_esc(k)}</span><b>{_esc(v)}</b></div>"
        for k, v in cards
    )


def write_report(ledger: Ledger, ws: Workspace, contract: Any) -> Path:
    """report.html and progress.png in the run folder; the path of the HTML."""
    info = ledger.run()
    assert info is not None
    exps = ledger.experiments()
    data = summary(info, exps, contract, overlaps(exps))
    data["steering"] = steered(ledger.steering())
    data["notes"] = ledger.notes()[-50:]  # the latest; `log` has them all
    png = ledger.dir / "progress.png"
    png_tmp = png.with_name(f".progress.{os.getpid()}.png")
    plot_progress(data, png_tmp)
    links = write_pages(ledger.dir, exps)
    holder = best_holder(e for e in exps if e.merged_sha)
    best = holder.merged_sha if holder else None
    final = ws.diff(info.base_commit, best) if best else ""
    page = render(data, png_tmp.read_bytes(), final, links)
    os.replace(png_tmp, png)
    out = ledger.dir / "report.html"
    tmp = out.with_name(f".report.{os.getpid()}.html")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out
