"""The one sanitiser for untrusted text on its way out: terminals, fields, commit messages.

Candidate output, crash reasons that quote it, and what agents write (descriptions,
hypotheses, patch names) are untrusted text. Wherever such text leaves for a
person or a file that other tools parse, it goes through one of these:

- `terminal`: escape and control sequences shown escaped (`\\x1b`), so no window
  title, clipboard write (OSC 52) or cursor trick reaches the operator's terminal;
  line breaks are kept where the text is a block, escaped where it is one line.
- `field`: one line for a table cell (results.tsv, status): no tab, no newline, no
  control byte.
- `commit`: text for a commit message: control bytes removed, and no line shaped
  like one of its trailers (`Autoresearch-Metric: ...`, `Signed-off-by: ...`).
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (ESC, BEL, NUL...), DEL, and the line and bidi overrides."""
_TRAILER = re.compile(r"^(\s*)([A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\s*:)", re.MULTILINE)
"""A git trailer's shape with a hyphenated token (`Autoresearch-Metric:`, `Signed-off-by:`)."""


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def terminal(text: str, *, one_line: bool = False) -> str:
    """`text` safe to print on a terminal: every control character shown escaped."""
    text = text.replace("\r\n", "\n")
    out = _CONTROL.sub(_escape, text)
    if one_line:
        out = out.replace("\n", "\\n").replace("\t", "\\t")
    return out


def field(text: str) -> str:
    """One table cell: whitespace runs become one space, control characters are escaped."""
    return terminal(" ".join(text.split()), one_line=True)


def line(text: str) -> str:
    """One line of plain text for a prompt: whitespace runs become one space, control
    characters are dropped (escaped, they would read as content)."""
    return _CONTROL.sub("", " ".join(text.split()))


def commit(text: str) -> str:
    """A commit message body that holds no trailer-shaped line and no control byte."""
    clean = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _TRAILER.sub(lambda m: f"{m.group(1)}> {m.group(2)}", clean)
