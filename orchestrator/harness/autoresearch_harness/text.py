"""What the candidate says, as the trusted side holds it: text that cannot pass for ours.

Every string that comes back from the candidate is a `CandidateText`: a real `str`
(it compares, hashes and slices as one), but printed or formatted it shows
quoted wherever it could be mistaken for a line of the evaluator's own output
(a control character, a line break, or the shape of a metric line). So an
evaluator that prints what the candidate returned cannot be made to print a
forged `p95_ms: 0.0001`. Errors the candidate raised arrive as `CandidateError`s
that are also the builtin type it raised (`except ValueError` works).
"""

from __future__ import annotations

import builtins
import re

_LOOKS_LIKE_OURS = re.compile(
    r"[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]|^\s*(?:METRIC\s|[A-Za-z_][A-Za-z0-9_.\-]*\s*:)",
    re.IGNORECASE,
)


class CandidateText(str):
    """A string the candidate produced (see the module docstring)."""

    __slots__ = ()

    def _shown(self) -> str:
        plain = str.__str__(self)
        return repr(plain) if _LOOKS_LIKE_OURS.search(plain) else plain

    def __str__(self) -> str:
        return self._shown()

    def __format__(self, spec: str) -> str:
        return format(self._shown(), spec)

    def __repr__(self) -> str:
        return str.__repr__(self)

    def __radd__(self, other: object) -> CandidateText:
        if not isinstance(other, str):
            return NotImplemented
        return CandidateText(str.__str__(other) + str.__str__(self))


def _still_candidate(name: str) -> None:
    """`text.strip()`, `text.split()`, `text[2:]`, `text + "x"`... stay candidate text."""
    plain = getattr(str, name)

    def method(self: CandidateText, *args: object, **kwargs: object) -> object:
        return _wrap(plain(self, *args, **kwargs))

    method.__name__ = name
    setattr(CandidateText, name, method)


def _wrap(value: object) -> object:
    if type(value) is str:
        return CandidateText(value)
    if type(value) is list:
        return [_wrap(v) for v in value]
    if type(value) is tuple:
        return tuple(_wrap(v) for v in value)
    return value


for _name in (
    "__getitem__", "__add__", "__mul__", "__rmul__", "__mod__", "capitalize",
    "casefold", "center", "expandtabs", "format", "join", "ljust", "lower", "lstrip",
    "partition", "removeprefix", "removesuffix", "replace", "rjust", "rpartition", "rsplit",
    "rstrip", "split", "splitlines", "strip", "swapcase", "title", "translate", "upper", "zfill",
):  # fmt: skip
    if hasattr(str, _name):
        _still_candidate(_name)


class CandidateError(Exception):
    """The candidate's code raised, or its worker died; `kind` names what it raised.

    Its traceback is in the candidate's log; a traceback printed here shows it as
    `candidate.KeyError: ...` (the builtin kinds) or `candidate.CandidateError: Kind: ...`.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = CandidateText(message)

    def __str__(self) -> str:
        if type(self).__name__ == self.kind:
            return str(self.message)
        return f"{self.kind}: {self.message}" if self.message else self.kind


CandidateError.__module__ = "candidate"


class CandidateGone(CandidateError):
    """The candidate's worker ended (it exited, was killed, or broke the wire)."""


_KINDS: dict[str, type[CandidateError]] = {}


def candidate_error(kind: str, message: str) -> CandidateError:
    """The error to raise for what the candidate raised: also the builtin exception of that
    name, when there is one, so `except KeyError` catches a candidate's KeyError."""
    name = re.sub(r"[^A-Za-z0-9_]", "", kind)[:80] or "Exception"
    base = getattr(builtins, name, None)
    if not (isinstance(base, type) and issubclass(base, Exception)) or issubclass(
        base, CandidateError
    ):
        return CandidateError(name, message)
    if name not in _KINDS:
        try:
            _KINDS[name] = type(name, (CandidateError, base), {"__module__": "candidate"})
        except TypeError:  # a builtin whose layout cannot be mixed in
            return CandidateError(name, message)
    return _KINDS[name](name, message)
