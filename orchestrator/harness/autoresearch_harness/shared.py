"""Lists, dicts, sets and bytearrays a test hands the candidate, kept the same on both sides.

Plain data crosses by value, so a function that fills a list in place, or an object
that keeps the dict it was given as its cache, would change a copy the test never
sees. A mutable container the trusted side passes as an argument (or assigns to an
attribute) is therefore *shared*: the candidate gets a copy registered under an id,
and whenever either side sends a message it sends along the new contents of each
shared container that changed since the last message (compared by a fingerprint: the
items themselves, by identity, when they are numbers, text, bytes or tuples of those,
else the encoded contents). The receiving side writes them into its own container in
place, before it decodes the message. When the same container crosses again, in
either direction, it arrives as the other side's container itself (`is` holds).

The candidate's copy lives as long as the candidate holds it: when no one but the
registry refers to it, the candidate sends its last contents and releases it (with
the number of times it received it, so a share sent meanwhile keeps it alive, as
references do in `peer.py`).

What the candidate writes into a shared container is plain data or stand-ins, into
a container the test gave it to fill: nothing crosses that could not cross as a
call's answer. Containers of more than `LIMIT` items are copied, not shared (their
fingerprints would cost every message).
"""

from __future__ import annotations

import collections
import itertools
import operator
import sys
import threading
from typing import Any, Protocol

from . import values, wire
from .kinds import one_of

LIMIT = 10_000
"""Largest container (top-level items) that is shared; a larger one crosses as a copy."""

_RETIRED = 64
"""Containers the candidate released that the trusted side still resolves (the message that
released one may also name it, decoded later, perhaps on another thread)."""

_ATOMS: frozenset[type] = frozenset((int, float, complex, str, bytes, bool, type(None)))
"""Immutable values a fingerprint holds as themselves (an item replaced is another object)."""

_HELD_ONLY_HERE = 3
"""sys.getrefcount of a container the registry alone holds (registry, loop variable, argument)."""


class Plain:
    """An answer that is the session's own framing (an iterator's batch of values and its end),
    encoded as plain data and never shared: the candidate's copy of a shared step would be held by
    the traceback of the error it carries, a cycle the registry keeps alive, fingerprinted at
    every message for the rest of the session."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Codec(Protocol):
    """What the shared containers use of a session (`peer.py`'s Peer): its values' encoding."""

    def encode(self, value: Any) -> Any: ...

    def decode(self, data: Any, text: type[str] = str) -> Any: ...


class Shared:
    """The shared containers of one side of a session (see the module docstring)."""

    def __init__(self, origin: bool, text: type[str] = str) -> None:
        self.origin = origin  # the trusted side: it shares; the candidate holds copies
        self.text: type[str] = text
        self._atoms: frozenset[type] = _ATOMS.union((text,))
        self._lock = threading.RLock()
        self._objects: dict[int, Any] = {}
        self._index: dict[int, int] = {}
        self._prints: dict[int, Any] = {}
        self._counts: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._busy: set[int] = set()
        self._retired: collections.OrderedDict[int, Any] = collections.OrderedDict()

    @property
    def live(self) -> bool:
        return bool(self._objects)

    # -- encoding ----------------------------------------------------------
    def share(self, peer: Codec, value: Any) -> Any:
        """`value` encoded as a shared container if it is one that may be (the trusted side's
        arguments), else as plain data."""
        if type(value) is Plain:
            return peer.encode(value.value)
        if not self.origin or not one_of(type(value), values.SHAREABLE) or len(value) > LIMIT:
            return peer.encode(value)
        with self._lock:
            sid = self._known(value) or self._new(value)
            if sid in self._busy:
                raise TypeError(f"a {_kind(value)} that contains itself cannot cross")
            self._busy.add(sid)
            try:
                body = [_kind(value), self._contents(peer, value)]
            finally:
                self._busy.discard(sid)
            self._counts[sid] = self._counts.get(sid, 0) + 1
            self._prints[sid] = self._fingerprint(value)
            return {"$sh": [sid, body]}

    def tag(self, peer: Codec, value: Any) -> Any:
        """A container this side shares as the encoding hook sees it (anywhere in a value): the
        trusted side's again with its contents (the candidate may have let its copy go), the
        candidate's copy as `[id]`; None for any other container."""
        sid = self._known(value)
        if sid is None:
            return None
        return self.share(peer, value) if self.origin else {"$sh": [sid]}

    def _known(self, value: Any) -> int | None:
        sid = self._index.get(id(value))
        return sid if sid is not None and self._objects.get(sid) is value else None

    def _marker(self, value: Any) -> Any:
        """A shared container inside another's fingerprint: its id (its own entry has its contents)."""
        sid = self._known(value)
        return None if sid is None else {"$sh": sid}

    def _fingerprint(self, value: Any) -> Any:
        """What tells whether the container changed since (see the module docstring)."""
        quick = _items(value, self._atoms)
        return quick if quick is not None else _fingerprint(value, self._marker)

    def _new(self, value: Any) -> int:
        sid = next(self._ids)
        self._objects[sid], self._index[id(value)] = value, sid
        return sid

    def _contents(self, peer: Codec, value: Any) -> Any:
        """The container's items, encoded (this container itself is not a reference to itself)."""
        if type(value) is bytearray:
            return peer.encode(bytes(value))
        if type(value) is dict:
            return peer.encode([[k, v] for k, v in value.items()])
        return peer.encode(list(value))

    # -- decoding -----------------------------------------------------------
    def resolve(self, peer: Codec, body: Any) -> Any:
        """The container `{"$sh": body}` names: this side's own, or a copy made or refreshed."""
        if not (isinstance(body, list) and body and type(body[0]) is int):
            raise wire.WireError("a shared container is [id] or [id, kind, items]")
        sid = body[0]
        with self._lock:
            known = self._objects.get(sid)
            if len(body) == 1:
                if known is None:
                    known = self._retired.get(sid)
                if known is None:
                    raise wire.WireError("a shared container this side does not hold")
                return known
            if self.origin:
                raise wire.WireError("only the trusted side shares containers")
            kind, items = (
                body[1] if isinstance(body[1], list) and len(body[1]) == 2 else (None, None)
            )
            made = _made(kind, peer.decode(items, self.text))
            if known is not None and type(known) is type(made):
                _write(known, made)
                made = known
            else:
                self._objects[sid], self._index[id(made)] = made, sid
            self._counts[sid] = self._counts.get(sid, 0) + 1
            self._prints[sid] = self._fingerprint(made)
            return made

    # -- what goes with every message ----------------------------------------
    def outgoing(self, peer: Codec) -> dict[str, Any]:
        """The new contents of each shared container that changed, and (the candidate) the copies
        no one holds any more, released."""
        if not self._objects:
            return {}
        out: dict[str, Any] = {}
        with self._lock:
            changed, released = [], []
            for sid in list(self._objects):
                value = self._objects[sid]
                now = self._fingerprint(value)
                if not _unchanged(self._prints.get(sid), now):
                    try:
                        changed.append([sid, [_kind(value), self._contents(peer, value)]])
                        self._prints[sid] = now
                    except (TypeError, ValueError, wire.WireError, RecursionError):
                        # it now holds what cannot cross (itself, say): no longer kept the same
                        if not self.origin:
                            released.append([sid, self._counts.get(sid, 0)])
                        self._forget(sid)
                        continue
                if not self.origin and sys.getrefcount(value) <= _HELD_ONLY_HERE:
                    released.append([sid, self._counts.pop(sid, 0)])
                    self._forget(sid)
                del value
            if changed:
                out["synced"] = changed
            if released:
                out["unshared"] = released
        return out

    def incoming(self, peer: Codec, frame: dict[str, Any]) -> None:
        """Write what the other side says changed into this side's containers, before the
        message's values are decoded; forget what the candidate released."""
        synced = frame.get("synced")
        if isinstance(synced, list):
            with self._lock:
                for entry in synced:
                    if not (isinstance(entry, list) and len(entry) == 2):
                        raise wire.WireError("a synced container is [id, [kind, items]]")
                    sid, (kind, items) = entry[0], _pair(entry[1])
                    mine = self._objects.get(sid)
                    if mine is None:
                        continue  # released here meanwhile: nothing holds it
                    made = _made(kind, peer.decode(items, self.text))
                    if type(made) is not type(mine):
                        raise wire.WireError("a synced container changed its kind")
                    _write(mine, made)
                    self._prints[sid] = self._fingerprint(mine)
        unshared = frame.get("unshared")
        if isinstance(unshared, list) and self.origin:
            with self._lock:
                for entry in unshared:
                    if not (isinstance(entry, list) and len(entry) == 2):
                        continue
                    sid, n = entry
                    left = self._counts.get(sid, 0) - (n if type(n) is int else 0)
                    if left > 0:
                        self._counts[sid] = left
                    elif sid in self._objects:
                        # the message that released it may name it: it stays resolvable a while
                        self._retired[sid] = self._objects[sid]
                        while len(self._retired) > _RETIRED:
                            self._retired.popitem(last=False)
                        self._forget(sid)

    def _forget(self, sid: int) -> None:
        value = self._objects.pop(sid)
        self._prints.pop(sid, None)
        self._counts.pop(sid, None)
        if self._index.get(id(value)) == sid:
            del self._index[id(value)]


def _kind(value: Any) -> str:
    return type(value).__name__


def _pair(entry: Any) -> tuple[Any, Any]:
    if not (isinstance(entry, list) and len(entry) == 2):
        raise wire.WireError("a shared container's contents are [kind, items]")
    return entry[0], entry[1]


def _made(kind: Any, items: Any) -> Any:
    """A new container of `kind` holding `items` as decoded."""
    if kind == "list" and isinstance(items, list):
        return items
    if kind == "set" and isinstance(items, list):
        return set(items)
    if kind == "bytearray" and isinstance(items, bytes):
        return bytearray(items)
    if (
        kind == "dict"
        and isinstance(items, list)
        and all(isinstance(p, list) and len(p) == 2 for p in items)
    ):
        try:
            return dict(items)  # type: ignore[arg-type]
        except TypeError:
            raise wire.WireError("a dict key that cannot be hashed") from None
    raise wire.WireError("a shared container is a list, dict, set or bytearray")


def _write(mine: Any, new: Any) -> None:
    """`mine` made to hold what `new` holds, in place."""
    if type(mine) is list or type(mine) is bytearray:
        mine[:] = new
    else:
        mine.clear()
        mine.update(new)


class _Items:
    """A container's items as they are, compared by identity (`_unchanged`)."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


def _items(value: Any, atoms: frozenset[type]) -> Any:
    """The container's items (a bytearray's bytes) when each is an atom or a tuple of atoms (a
    change to one is a new object), else None. C loops only: this runs at every message."""
    if type(value) is bytearray:
        return bytes(value)
    items = [*value, *value.values()] if type(value) is dict else list(value)
    kinds = set(map(type, items))
    if tuple in kinds:
        kinds.discard(tuple)
        inner = items if not kinds else [x for x in items if type(x) is tuple]
        kinds.update(map(type, itertools.chain.from_iterable(inner)))
    return _Items(items) if kinds <= atoms else None


def _unchanged(before: Any, now: Any) -> bool:
    if type(before) is _Items and type(now) is _Items:
        a, b = before.items, now.items
        return len(a) == len(b) and all(map(operator.is_, a, b))
    return type(before) is type(now) and before == now


def _fingerprint(value: Any, tag: Any) -> Any:
    """The container's contents as data that compares equal while they do not change (objects by
    identity; no reference is made)."""
    try:
        return values.encode(value, _identity, shared=_nested(value, tag))
    except (TypeError, ValueError, wire.WireError, RecursionError):
        return object()  # cannot tell: it counts as changed


def _identity(value: Any) -> Any:
    return {"$id": id(value)}


def _nested(top: Any, tag: Any) -> Any:
    def shared(value: Any) -> Any:
        return None if value is top else tag(value)

    return shared
