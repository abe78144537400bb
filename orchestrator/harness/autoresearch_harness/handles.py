"""What the candidate holds of the trusted side: capabilities.

A value the trusted side passed that is not plain data arrives as a `Trusted`
object of a class made for its type: calling, iterating, comparing it, or reading
a public attribute, asks the trusted side, which decides what it serves
(`capabilities.py`). Exceptions of the trusted side's own classes arrive as
`TrustedError`s, so `except` catches them and they go back as themselves.
"""

from __future__ import annotations

import collections
import collections.abc
from typing import Any

from . import names

_DESCRIPTIVE = frozenset(("__name__", "__qualname__", "__module__", "__doc__", "__wrapped__"))


class Trusted:
    """A capability: an object of the trusted side the candidate may call, iterate, compare."""

    def __getattr__(self, name: str) -> Any:
        if name == "__signature__":
            return _signature(_ask(self, "getattr", name=name))
        if (name.startswith("__") and name not in _DESCRIPTIVE) or name.startswith("_ar"):
            raise AttributeError(name)
        return _ask(self, "getattr", name=name)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("an object of the trusted side cannot be pickled")


class _Default:
    """A trusted function's default: there is one, and it is not handed over."""

    def __repr__(self) -> str:
        return "<a default of the trusted side>"


def _signature(params: Any) -> Any:
    """The `inspect.Signature` of the trusted side's description (`capabilities.signature`)."""
    import inspect

    out = []
    for name, kind, default in params:
        d = _Default() if default else inspect._empty
        out.append(inspect.Parameter(str(name), inspect._ParameterKind(kind), default=d))
    return inspect.Signature(out)


def _ask(cap: Any, op: str, **fields: Any) -> Any:
    side, peer, hid = object.__getattribute__(cap, "__dict__")["_ar"]
    with side.clock.asking():
        return peer.request(op, target=hid, **fields)


def _forward(name: str) -> Any:
    def forward(self: Any, *args: Any) -> Any:
        _side, peer, _ = object.__getattribute__(self, "__dict__")["_ar"]
        return _ask(self, "dunder", name=name, args=peer.encode(list(args)))

    forward.__name__ = name
    return forward


def _call(self: Any, /, *args: Any, **kwargs: Any) -> Any:
    _, peer, _ = object.__getattribute__(self, "__dict__")["_ar"]
    return _ask(self, "call", args=peer.encode(list(args)), kwargs=peer.encode(kwargs))


def _next(self: Any) -> Any:
    state = object.__getattribute__(self, "__dict__")
    buffered = state.get("_ar_buffer")
    if buffered:
        return buffered.popleft()
    end = state.pop("_ar_end", None)
    if end is not None:
        state.pop("_ar_bulk", None)
        raise end
    n = state.get("_ar_bulk", 1)
    step = _ask(self, "next", n=n)
    if n > 1:
        state["_ar_bulk"] = min(n * 4, 1024)
    values, error = step["values"], step.get("error")
    end = error if isinstance(error, BaseException) else StopIteration() if step["done"] else None
    if values:
        state["_ar_buffer"] = collections.deque(values[1:])
        if end is not None:
            state["_ar_end"] = end
        return values[0]
    state.pop("_ar_bulk", None)
    raise end if end is not None else RuntimeError("the trusted iterator answered nothing")


def _length_hint(self: Any) -> Any:
    object.__getattribute__(self, "__dict__").setdefault("_ar_bulk", 16)
    return NotImplemented


def _doc(self: Any) -> Any:
    try:
        return _ask(self, "getattr", name="__doc__")
    except AttributeError:  # served for functions and classes only
        return None


def capability_class(desc: dict[str, Any]) -> type:
    dunders = [d for d in desc.get("dunders", ()) if isinstance(d, str)]
    # every class has a `__doc__`, so `__getattr__` never sees it: the object's own, on request
    # (what functools.wraps copies onto the candidate's wrapper of a test's function)
    ns: dict[str, Any] = {"__doc__": property(_doc)}
    for name in dunders:
        if name == "__hash__=None":
            ns["__hash__"] = None
        elif name == "__call__":
            ns[name] = _call
        elif name == "__next__":
            ns[name] = _next
            ns["__length_hint__"] = _length_hint
        elif name in names.SPECIAL:
            ns[name] = _forward(name)
    if desc.get("iter_self") and "__iter__" in ns:
        ns["__iter__"] = lambda self: self
    if "__eq__" in ns and "__hash__" not in ns:
        ns["__hash__"] = _forward("__hash__")
    name = str(desc.get("name", "trusted"))
    return type(name if name.isidentifier() else "trusted", (Trusted,), ns)


class TrustedError(Exception):
    """An exception of a class the trusted side defined, raised through candidate code."""


# -- the candidate's side of a session ----------------------------------------


def held_reference(value: Any) -> Any:
    """The `$y` body for a capability: its id, with what was read ahead of it and not used yet."""
    try:
        state = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return None
    ref = state.get("_ar")
    if not (isinstance(value, Trusted) and isinstance(ref, tuple) and len(ref) == 3):
        return None
    values, end = state.pop("_ar_buffer", None), state.pop("_ar_end", None)
    state.pop("_ar_bulk", None)
    if values or end is not None:
        _, peer, hid = ref
        return [hid, peer.encode({"values": list(values or ()), "end": end})]
    return ref[2]
