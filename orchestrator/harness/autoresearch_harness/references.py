"""The two reference tables of a session's side (`peer.py`): what it sent, what it holds.

The owner keeps each object it sends by reference in a table and counts the
sends; the other side holds one stand-in per reference (the same object every
time, so `is` works) and, when that stand-in dies, releases it with the number of
sends it received, so a reference sent again meanwhile stays alive.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import wire


class References:
    """What this side sent by reference, and the stand-ins of what the other side sent."""

    def __init__(self) -> None:
        # what this side sent by reference
        self._table_lock = threading.RLock()
        self._objects: dict[int, Any] = {}
        self._index: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        self._pinned: set[int] = set()
        self._hids = itertools.count(1)
        # what the other side sent by reference
        self._stand_ins: dict[int, weakref.ref[Any]] = {}
        self._received: dict[int, int] = {}
        self._kept: dict[int, Any] = {}
        self._releases: list[list[int]] = []  # sent with this side's next message

    # -- what this side sends by reference -------------------------------
    def export(self, obj: Any, pin: bool = False) -> int:
        """The reference id of `obj` (kept here until the other side releases every send)."""
        with self._table_lock:
            hid = self._index.get(id(obj))
            if hid is None or self._objects.get(hid) is not obj:
                hid = next(self._hids)
                self._objects[hid], self._index[id(obj)] = obj, hid
            self._counts[hid] = self._counts.get(hid, 0) + 1
            if pin:
                self._pinned.add(hid)
            return hid

    def exported(self, hid: Any) -> Any:
        """What this side sent as `hid` (a WireError for an id it never sent or that was released)."""
        with self._table_lock:
            if type(hid) is not int or hid not in self._objects:
                raise wire.WireError("a reference this side does not hold")
            return self._objects[hid]

    def replace(self, hid: int, obj: Any) -> None:
        """Let `hid` stand for `obj` from now on (both sides keep using the same id)."""
        with self._table_lock:
            old = self._objects.get(hid)
            if old is not None and self._index.get(id(old)) == hid:
                del self._index[id(old)]
            self._objects[hid], self._index[id(obj)] = obj, hid

    def table(self) -> Any:
        """The table of what this side sent (to tell it apart from other holders of an object)."""
        return self._objects

    def known(self, obj: Any) -> int | None:
        with self._table_lock:
            hid = self._index.get(id(obj))
            return hid if hid is not None and self._objects.get(hid) is obj else None

    def _release(self, pairs: Any) -> None:
        if not isinstance(pairs, list):
            return
        with self._table_lock:
            for pair in pairs:
                if not (isinstance(pair, list) and len(pair) == 2):
                    continue
                hid, n = pair
                if hid in self._pinned or type(n) is not int:
                    continue
                left = self._counts.get(hid, 0) - n
                if left > 0:
                    self._counts[hid] = left
                elif hid in self._objects:
                    obj = self._objects.pop(hid)
                    self._counts.pop(hid, None)
                    if self._index.get(id(obj)) == hid:
                        del self._index[id(obj)]

    # -- what the other side sent by reference ---------------------------
    def stand_in(self, hid: int, make: Callable[[], Any], keep: bool = False) -> Any:
        """The one stand-in for the other side's `hid` (made by `make` the first time)."""
        ref = self._stand_ins.get(hid)
        obj = ref() if ref is not None else None
        if obj is None:
            obj = make()
            if keep:
                self._kept[hid] = obj
            self._stand_ins[hid] = weakref.ref(obj, self._dropped(hid))
            self._received[hid] = 0
        self._received[hid] = self._received.get(hid, 0) + 1
        return obj

    def holds_any(self) -> bool:
        """Whether this side holds any live stand-in of the other side's objects (besides kept ones)."""
        return any(
            ref() is not None for hid, ref in list(self._stand_ins.items()) if hid not in self._kept
        )

    def held(self, hid: int) -> Any:
        ref = self._stand_ins.get(hid)
        return ref() if ref is not None else None

    def _dropped(self, hid: int) -> Callable[[Any], None]:
        def release(_: Any) -> None:
            if self._stand_ins.get(hid) is not None and self._stand_ins[hid]() is None:
                del self._stand_ins[hid]
            n = self._received.pop(hid, 0)
            if n:
                self._releases.append([hid, n])

        return release
