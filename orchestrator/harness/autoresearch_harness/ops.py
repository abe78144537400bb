"""What the trusted side may ask of the candidate's objects, served in the candidate's process.

Each op takes the session, the target object and the request's arguments. What
an op answers is data for the trusted side to check, never to believe.
"""

from __future__ import annotations

import collections
import collections.abc
import copy
import inspect
import pickle
import time
import traceback
import types
from typing import TYPE_CHECKING, Any, Protocol

from . import names

if TYPE_CHECKING:
    from .peer import Peer


MUTABLE = (list, dict, set, bytearray, collections.deque, collections.OrderedDict,
           collections.defaultdict, collections.Counter)  # fmt: skip
"""Containers that are part of the candidate's state when read as an attribute: they cross by
reference then (a test that adds to a module's set adds to the candidate's), by value otherwise."""

_CONTAINERS: tuple[Any, ...] = ([], (), {}, set(), "", b"", range(1), {}.values(),
               {}.items(), collections.deque())  # fmt: skip
EAGER: frozenset[str] = frozenset(type(iter(x)).__name__ for x in _CONTAINERS)
"""Iterators over the builtin containers: reading ahead of the consumer changes nothing."""

AHEAD_S = 0.002
"""How long a generator is read ahead of the trusted side's next(), at most (seconds).

Only a generator made by a call of plain data (so it shares state with nothing the
trusted side holds) is read ahead, and only while it yields plain data (a yielded
object may share its state, as groupby's groups do): the trusted side gets the same
values in the same order, in fewer trips."""


class Side(Protocol):
    """What an op reads of the candidate's side of a session (`candidate.py`'s CandidateSide)."""

    ahead: set[int]
    """Reference ids of the iterators that may be read ahead of the trusted side (`_read`)."""


class Held:
    """A value that crosses by reference even when it is plain data (see MUTABLE)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def as_attribute(value: Any) -> Any:
    return Held(value) if type(value) in MUTABLE else value


def _dunder(side: Side, peer: Peer, t: Any, name: str, a: list[Any], k: dict[str, Any],
            r: dict[str, Any]) -> Any:  # fmt: skip
    if name == "__class_getitem__":
        return t.__class_getitem__(*a)
    if name not in names.SPECIAL:
        raise TypeError(f"{name} is not a special method the harness forwards")
    via = r.get("via")
    if via is None or not _trusted_sub(t):
        return getattr(type(t), name)(t, *a, **k)
    owner = peer.exported(via)
    raw = inspect.getattr_static(owner, name)  # as `owner` defines it: super() from a subclass
    return raw.__get__(t, type(t))(*a, **k) if hasattr(raw, "__get__") else raw(t, *a, **k)


def _method(side: Side, peer: Peer, t: Any, name: str, a: list[Any], k: dict[str, Any],
            r: dict[str, Any]) -> Any:  # fmt: skip
    via = r.get("via")
    if via is None or not _trusted_sub(t):
        return getattr(t, name)(*a, **k)  # as any caller would find it: the instance's first
    owner = peer.exported(via)  # a trusted subclass's super(): the class that defines it
    raw = inspect.getattr_static(owner, name)
    if isinstance(raw, classmethod):
        return raw.__func__(t if isinstance(t, type) else type(t), *a, **k)
    if isinstance(raw, staticmethod):
        return raw.__func__(*a, **k)
    return getattr(owner, name)(t, *a, **k)


def _next_values(side: Side, peer: Peer, t: Any, name: str, a: list[Any],
                 k: dict[str, Any], r: dict[str, Any]) -> Any:  # fmt: skip
    n = r.get("n")
    return _read(t, n if type(n) is int and 0 < n <= 1024 else 1, r.get("target") in side.ahead)


def _read(t: Any, count: int, ahead: bool) -> dict[str, Any]:
    """Up to `count` values of an iterator (more, for a while, when it may be read ahead)."""
    ahead = ahead and count == 1
    if ahead:
        count, until = 256, time.monotonic() + AHEAD_S
    values: list[Any] = []
    try:
        for _ in range(count):
            value = next(t)
            values.append(value)
            if ahead and (not _plain(value) or time.monotonic() > until):
                break
    except StopIteration:
        return {"values": values, "done": True}
    except Exception as e:
        if not values:
            raise
        traceback.print_exception(e)
        return {"values": values, "done": False, "error": e}
    return {"values": values, "done": False}


def _call_op(side: Side, peer: Peer, t: Any, name: str, a: list[Any], k: dict[str, Any],
             r: dict[str, Any]) -> Any:  # fmt: skip
    result = t(*a, **k)
    if _readable_ahead(type(result)) and _plain(a) and _plain(list(k.values())):
        return ReadAhead(result, _read(result, 1, True))
    return result


class ReadAhead:
    """A generator and the values read ahead of it, crossing together."""

    __slots__ = ("generator", "step")

    def __init__(self, generator: Any, step: dict[str, Any]) -> None:
        self.generator, self.step = generator, step


def _readable_ahead(cls: type) -> bool:
    """A generator, or an iterator of the builtins or itertools (whose state is all inside)."""
    return cls is types.GeneratorType or (
        cls.__module__ in ("itertools", "builtins") and iter_self(cls)
    )


def iter_self(cls: type) -> bool:
    """An iterator whose iter() is itself, by the C protocol (a Python __iter__ may do more)."""
    return hasattr(cls, "__next__") and isinstance(
        getattr(cls, "__iter__", None), types.WrapperDescriptorType
    )


def _plain(values: Any, depth: int = 0) -> bool:
    """Plain data only: no object of either side in it (so a generator made from it shares state
    with nothing the trusted side holds)."""
    t = type(values)
    if values is None or t in (bool, int, float, str, bytes, complex, range, slice):
        return True
    if t in (list, tuple, set, frozenset) and depth < 8:
        return all(_plain(v, depth + 1) for v in values)
    if t is dict and depth < 8:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in values.items())
    return False


def _subclass(side: Side, peer: Peer, t: Any, name: str, a: list[Any], k: dict[str, Any],
              r: dict[str, Any]) -> Any:  # fmt: skip
    """A subclass of the candidate's class `t` whose members are the trusted subclass's."""
    ns: dict[str, Any] = {}
    for member, spec in dict(peer.decode(r.get("members", {"$d": []}))).items():
        kind, value = spec[0], spec[1]
        if kind == "function":
            ns[member] = _calling(value)
        elif kind == "classmethod":
            ns[member] = classmethod(_calling(value))
        elif kind == "staticmethod":
            ns[member] = staticmethod(value)
        elif kind == "property":
            ns[member] = property(*(None if f is None else _calling(f) for f in spec[1:4]))
        elif kind == "data":
            ns[member] = value
    safe = name if name.isidentifier() else "TrustedSubclass"
    ns["_ar_trusted_sub"] = True
    return type(t)(safe, (t,), ns)


def _trusted_sub(t: Any) -> bool:
    """`t` is (an object of) a subclass the trusted side made of a candidate class."""
    cls = t if isinstance(t, type) else type(t)
    return "_ar_trusted_sub" in vars(cls) or any("_ar_trusted_sub" in vars(c) for c in cls.__mro__)


def _calling(capability: Any) -> Any:
    def member(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        return capability(self, *args, **kwargs)

    return member


OPS: dict[str, Any] = {
    "call": _call_op,
    "subclass": _subclass,
    "new": lambda s, p, t, n, a, k, r: (
        t.__new__(t, *a, **k) if t.__new__ is not object.__new__ else object.__new__(t)
    ),
    "method": _method,
    "getattr": lambda s, p, t, n, a, k, r: as_attribute(getattr(t, n)),
    "setattr": lambda s, p, t, n, a, k, r: setattr(t, n, p.decode(r.get("value"))),
    "delattr": lambda s, p, t, n, a, k, r: delattr(t, n),
    "dunder": _dunder,
    "iter": lambda s, p, t, n, a, k, r: iter(t),
    "next": _next_values,
    "len": lambda s, p, t, n, a, k, r: len(t),
    "bool": lambda s, p, t, n, a, k, r: bool(t),
    "hash": lambda s, p, t, n, a, k, r: hash(t),
    "repr": lambda s, p, t, n, a, k, r: repr(t),
    "str": lambda s, p, t, n, a, k, r: str(t),
    "copy": lambda s, p, t, n, a, k, r: copy.deepcopy(t) if r.get("deep") else copy.copy(t),
    "pickle": lambda s, p, t, n, a, k, r: pickle.dumps(t, r.get("protocol")),
}
