"""Reading a trusted iterator ahead of the candidate, when nothing else on the trusted side sees it.

The candidate asks for a trusted iterator's values one `next()` at a time (a
round trip each) unless its consumer takes them all (`list()`, `tuple()`, ...).
A test that hands over `permutations(range(180), 4)` and lets the candidate skip
a million of them would make a million trips. Reading ahead is invisible only
when (a) producing a value has no effect anywhere (the iterators in `PURE`: those
over containers, and the itertools objects that copy their input at
construction) and (b) nothing on the trusted side can look at the iterator
afterwards: no name in any frame, no container, nothing but the session's own
table and the harness's frames. Both are checked once, after the candidate took
`AFTER` values one at a time.
"""

from __future__ import annotations

import collections
import gc
import itertools
import os
import sys
import types
from typing import Any

from .kinds import standard_class

AFTER = 64
"""Single values the candidate takes before the iterator is considered for reading ahead."""
BATCH = 256
"""Most values sent ahead at once."""
_SAMPLES: tuple[Any, ...] = (
    iter([]),
    iter(()),
    iter(range(1)),
    iter(range(2**64, 2**64 + 1)),
    iter(""),
    iter("é"),
    iter(b""),
    iter({}),
    iter({}.values()),
    iter({}.items()),
    iter(set()),
    iter(collections.deque()),
    reversed([]),
    itertools.count(),
    itertools.repeat(1),
    itertools.permutations(()),
    itertools.combinations((), 0),
    itertools.product(),
    itertools.combinations_with_replacement((), 0),
)
PURE: frozenset[type] = frozenset(type(x) for x in _SAMPLES)
_HARNESS = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Ahead:
    """Which trusted iterators the session reads ahead of (by reference id)."""

    def __init__(self) -> None:
        self._taken: dict[int, int] = {}
        self._ahead: set[int] = set()

    def count(self, hid: int, iterator: Any, table: Any, n: int) -> int:
        """How many values to send for a request of `n` values of `iterator` (id `hid`)."""
        if n != 1 or not standard_class(type(iterator)) or type(iterator) not in PURE:
            return n
        if hid in self._ahead:
            return BATCH
        taken = self._taken.get(hid, 0) + 1
        self._taken[hid] = taken
        if taken == AFTER:
            del self._taken[hid]
            if alone(iterator, table):
                self._ahead.add(hid)
                return BATCH
        return 1


def alone(obj: Any, table: Any) -> bool:
    """Nothing but `table` and the harness's own frames refers to `obj` (see the module docstring).

    Written with loops only: a comprehension's closure cell would hold `obj` too.
    """
    frames = _frames()
    ours = {id(table), id(frames)}
    calls = []  # the harness's own argument tuples: the call site's copy is a C temporary
    for frame in frames:
        ours.add(id(frame.f_locals))  # a frame's locals are checked by name below
        if frame.f_code.co_filename.startswith(_HARNESS):
            ours.add(id(frame))
            for value in frame.f_locals.values():
                ours.add(id(value))
                if type(value) is tuple:
                    calls.append(value)
    referrers = gc.get_referrers(obj)
    ours.update((id(calls), id(referrers)))
    for referrer in referrers:
        if id(referrer) in ours or isinstance(referrer, types.FrameType):
            continue
        if type(referrer) is tuple and _call_site(referrer, calls, ours):
            continue
        return False
    for frame in frames:  # a name that holds it, in any frame of any thread
        if not frame.f_code.co_filename.startswith(_HARNESS):
            for value in frame.f_locals.values():
                if value is obj:
                    return False
    return True


def _call_site(args: tuple[Any, ...], calls: list[tuple[Any, ...]], ours: set[int]) -> bool:
    """`args` is the call site's copy of a harness call's arguments, held by nothing else."""
    for call in calls:
        if len(call) == len(args):
            same = True
            for x, y in zip(call, args, strict=True):
                if x is not y:
                    same = False
                    break
            if same:
                holders = gc.get_referrers(args)
                ours.add(id(holders))
                for holder in holders:
                    if id(holder) not in ours and not isinstance(holder, types.FrameType):
                        return False
                return True
    return False


def _frames() -> list[types.FrameType]:
    out = []
    for top in sys._current_frames().values():
        frame: types.FrameType | None = top
        while frame is not None:
            out.append(frame)
            frame = frame.f_back
    return out
