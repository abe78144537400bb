"""The metric channel: what an evaluator prints is how it reports.

Two line forms, both accepted anywhere in stdout/stderr:
    val_bpb:          0.997900      (the autoresearch convention)
    METRIC p95_ms=12.5
Every such line is a metric; when a name repeats, the last line wins. In harness
mode only the trusted evaluator's output is read. The orchestrator's own figures
(`TRUSTED`) are added over whatever was printed.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan"
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_LINE = re.compile(
    rf"^\s*(?:METRIC\s+(?P<n1>{_NAME})\s*=\s*(?P<v1>{_NUMBER})|(?P<n2>{_NAME})\s*:\s*(?P<v2>{_NUMBER}))\s*$",
    re.IGNORECASE,
)


def parse_metrics(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            name = m.group("n1") or m.group("n2")
            found[name] = float(m.group("v1") or m.group("v2"))
    return found


TRUSTED = ("sandbox.wall_s", "sandbox.cpu_s", "sandbox.peak_memory_mb")
"""The orchestrator's own figures of a run, usable as the metric or in constraints
(`sandbox.peak_memory_mb <= 1.1 * baseline`); an evaluator printing these names
cannot change them. So are the gateway's, every name under `gateway.`
(`gateway.llm.tokens <= 1.1 * baseline`)."""
GATEWAY = "gateway."


def measured(result: Any) -> dict[str, float]:
    """What one run reports: the evaluator's metric lines, then the trusted figures over them."""
    found = parse_metrics(result.output)
    for name in [*TRUSTED, *(n for n in found if n.startswith(GATEWAY))]:
        found.pop(name, None)
    figures = {
        "sandbox.wall_s": result.wall_s,
        "sandbox.cpu_s": result.cpu_s,
        "sandbox.peak_memory_mb": None
        if result.peak_memory_bytes is None
        else result.peak_memory_bytes / 1024**2,
    }
    found.update({k: float(v) for k, v in figures.items() if v is not None})
    found.update(getattr(result, "gateway", None) or {})
    return found
