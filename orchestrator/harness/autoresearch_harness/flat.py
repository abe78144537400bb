"""Lists and tuples of plain scalars, encoded and decoded in C loops (`values.py`'s fast path).

A test's data is mostly flat: lists of numbers, tuples of text. Each item needs no
tag, so the JSON encoder and decoder can take the container as it is once one
pass over its items' types (and, for floats, their finiteness) says so: a million
permutations read ahead cost a fifth of what an item-by-item walk does.
"""

from __future__ import annotations

import math
from typing import Any

_PLAIN = frozenset((str, bool, type(None)))
_NUMBERS = frozenset((int, float, bool))
_JSON_NUMBERS = frozenset((int, float, bool, type(None)))
_JSON_TEXT = _JSON_NUMBERS | {str}


def encoded(items: list[Any] | tuple[Any, ...]) -> list[Any] | None:
    """`items` as JSON-able data if each is text, a bool, None or a finite number that fits a
    float (a larger int needs its tag), else None."""
    kinds = set(map(type, items))
    if kinds <= _PLAIN:
        return list(items)
    if kinds <= _NUMBERS:
        try:
            finite = all(map(math.isfinite, items))
        except OverflowError:
            return None
        return list(items) if finite else None
    return None


def decoded(data: list[Any], text: type[str]) -> list[Any] | None:
    """A decoded list's items if each is a number, a bool, None or (as `text`) a string."""
    kinds = set(map(type, data))
    if kinds <= _JSON_NUMBERS:
        return list(data)
    if kinds <= _JSON_TEXT and text is str:
        return list(data)
    if kinds == {str}:
        return list(map(text, data))
    return None  # text mixed with numbers, as `text`: item by item
