"""The pages beside the report, loaded on demand: each experiment's diff, highlighted, and
a crash's or a refusal's log tail, in `experiments/<id>/diff.html` and `log.html`.

The report links them instead of inlining them, so it stays small with 1,000 rows.
A page is written once (again only when its source file is newer), so a refresh
of the report costs the pages of the experiments that finished since the last one.
Everything on them came from agents or candidate code: escaped, like the report.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from orchestrator import sanitize
from orchestrator.experiment import Experiment, experiment_dir

TAIL_CHARS = 4000
PAGES = ("diff.html", "log.html")
"""The only files of an experiment's folder the report links (and `--serve` serves)."""

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
pre{overflow:auto;font-size:12px;background:#f7f7f7;padding:8px;border-radius:6px}
.highlight pre{background:#f7f7f7} .muted{color:#666}
"""


def esc(v: object) -> str:
    """Untrusted text for HTML: control text cut (sanitize), then every markup character escaped."""
    return html.escape(sanitize.terminal(str(v)), quote=True)


def highlight(diff: str) -> str:
    """A diff as highlighted HTML (pygments escapes the text it is given)."""
    from pygments import highlight as pygmentize
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer

    formatter = HtmlFormatter(noclasses=True, nowrap=False, style="default")
    return str(pygmentize(diff, DiffLexer(), formatter))


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stale(page: Path, source: Path) -> bool:
    try:
        return page.stat().st_mtime_ns < source.stat().st_mtime_ns
    except FileNotFoundError:
        return True


def write_pages(run_dir: Path, exps: list[Experiment]) -> dict[int, dict[str, str]]:
    """The pages the experiments lack, written; each experiment's links, relative to the run folder."""
    links: dict[int, dict[str, str]] = {}
    for e in exps:
        folder = experiment_dir(run_dir, e.id)
        rel = f"experiments/{e.id:04d}"
        got: dict[str, str] = {}
        patch, log = folder / "diff.patch", folder / "output.log"
        if e.id > 0 and patch.exists():
            if _stale(folder / "diff.html", patch):
                text = patch.read_text(errors="replace")
                _write(folder / "diff.html", _page(f"experiment {e.id}: diff", highlight(text)))
            got["diff"] = f"{rel}/diff.html"
        if e.phase == "done" and e.status in ("crash", "refused") and log.exists():
            if _stale(folder / "log.html", log):
                tail = log.read_text(errors="replace")[-TAIL_CHARS:]
                body = (
                    "<p class='muted'>the end of what the evaluator printed (untrusted)</p>"
                    f"<pre>{esc(tail)}</pre>"
                )
                _write(folder / "log.html", _page(f"experiment {e.id}: log tail", body))
            got["log"] = f"{rel}/log.html"
        links[e.id] = got
    return links
