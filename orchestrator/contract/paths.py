"""Matching repo-relative paths against the contract's globs.

Patterns are POSIX, relative to the repo root: `*` and `?` stay inside one path
segment, `**` spans segments, and a pattern with no wildcard also covers
everything below it when it names a folder.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    body = "".join(out)
    if not any(c in pattern for c in "*?"):
        body += "(?:/.*)?"
    return re.compile(body + r"\Z")


def matches(path: str, pattern: str) -> bool:
    return _compile(pattern.rstrip("/")).match(path) is not None


def matches_any(path: str, patterns: list[str] | tuple[str, ...]) -> bool:
    return any(matches(path, p) for p in patterns)
