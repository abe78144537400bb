"""The metric channel: what an evaluator prints is how it reports.

Two line forms, both accepted anywhere in stdout/stderr:
    val_bpb:          0.997900      (the autoresearch convention)
    METRIC p95_ms=12.5
Every such line is a metric; when a name repeats, the last line wins.
"""

from __future__ import annotations

import math
import re

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


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
