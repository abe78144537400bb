"""The special methods and methods of stand-in classes: each asks the candidate.

Made per class (name, owner): a forwarder asks for the method as the class
`owner` defines it, so `super()` from a trusted subclass lands on the candidate's
own method rather than back on the override. What comes back is checked: a
`__len__` must be an int, a `__repr__` text; an `==` that answers True is asked
again against a canary (`CandidateLies`); a context manager never swallows an
AssertionError of ours. Iterators are read in batches when the consumer takes
everything (`list()`, `tuple()`...).
"""

from __future__ import annotations

import collections
import collections.abc
import secrets
from typing import Any

from .standins import CandidateLies, ask, call_args, ref, standin_base, subclass_of
from .text import CandidateText


def _special(self: Any, name: str, owner: int, args: list[Any], **fields: Any) -> Any:
    """Ask the candidate for `name` as the class `owner` defines it (super() from a trusted
    subclass lands on the candidate's own method, not back on the override)."""
    __tracebackhide__ = True
    peer, hid = ref(self)
    return ask(
        peer,
        "dunder",
        target=hid,
        name=name,
        via=owner,
        args=peer.encode_args(args)["args"],
        **fields,
    )


def dunder(name: str, owner: int) -> Any:
    def forward(self: Any, *args: Any) -> Any:
        return _special(self, name, owner, list(args))

    forward.__name__ = name
    return forward


def _eq(name: str, owner: int) -> Any:
    """`==` / `!=`: an answer that claims equality is checked against a canary."""
    claim = name == "__eq__"

    def compare(self: Any, other: Any) -> Any:
        answer = _special(self, name, owner, [other])
        if answer is claim:
            try:  # quiet: the canary's own warnings are not the test's
                again = _special(self, name, owner, [_canary(other)], quiet=True)
            except Exception:
                again = not claim
            if again is claim:
                raise CandidateLies(
                    "CandidateLies",
                    f"a {type(self).__qualname__} of the candidate claims to equal a value it has "
                    "never seen (its __eq__ answers True to anything)",
                )
        return answer

    compare.__name__ = name
    return compare


class _Canary:
    """A value no honest object equals: fresh, of a trusted class the candidate never saw."""

    __slots__ = ("__weakref__",)


def _canary(other: Any) -> Any:
    t = type(other)
    if t is int or t is bool:
        return secrets.randbits(62) | (1 << 62)
    if t is float:
        return float(secrets.randbits(52)) + 0.5
    if t is str or isinstance(other, CandidateText):
        return secrets.token_hex(12)
    if t is bytes:
        return secrets.token_bytes(12)
    if t is list or t is tuple:
        return t([*other, secrets.token_hex(8)])
    if t is set or t is frozenset:
        return t({*other, secrets.token_hex(8)})
    if t is dict:
        return {**other, secrets.token_hex(8): 0}
    return _Canary()


def _checked(name: str, check: type) -> Any:
    """A special method whose answer must be of one type (len, bool, hash, repr, str)."""

    def make(_: str, owner: int) -> Any:
        def forward(self: Any) -> Any:
            answer = _special(self, name, owner, [])
            if not isinstance(answer, check) or (name == "__len__" and answer < 0):  # type: ignore[operator]
                raise TypeError(f"the candidate's {name} did not answer a {check.__name__}")
            if (check is int and type(answer) is not int) or (
                check is bool and type(answer) is not bool
            ):
                raise TypeError(f"the candidate's {name} did not answer a {check.__name__}")
            return answer

        forward.__name__ = name
        return forward

    return make


def _iter(name: str, owner: int) -> Any:
    def forward(self: Any) -> Any:
        if any(c.__dict__.get("_ar_iterator") for c in type(self).__mro__):
            return self
        return _special(self, "__iter__", owner, [])

    return forward


def _next(self: Any) -> Any:
    """The next value; in a bulk read (see `length_hint`), fetched in growing batches."""
    state = object.__getattribute__(self, "__dict__")
    buffered = state.get("_ar_buffer")
    if buffered:
        return buffered.popleft()
    end = state.pop("_ar_end", None)
    if end is not None:  # raised once; the next call asks again (an iterator may resume)
        state.pop("_ar_bulk", None)
        raise end
    peer, hid = ref(self)
    n = state.get("_ar_bulk") or (64 if type(self).__dict__.get("_ar_eager") else 1)
    step = ask(peer, "next", target=hid, n=n)
    if not isinstance(step, dict) or not isinstance(step.get("values"), list):
        raise TypeError("the candidate's iterator answered neither a value nor its end")
    if n > 1 and "_ar_bulk" in state:
        state["_ar_bulk"] = min(n * 4, 1024)
    values, error = step["values"], step.get("error")
    end = (
        error if isinstance(error, BaseException) else StopIteration() if step.get("done") else None
    )
    if values:
        if len(values) > 1:
            state["_ar_buffer"] = collections.deque(values[1:])
        if end is not None:
            state["_ar_end"] = end
        return values[0]
    state.pop("_ar_bulk", None)
    if end is None:
        raise TypeError("the candidate's iterator answered neither a value nor its end")
    raise end


def take_back(obj: Any) -> dict[str, Any] | None:
    """An iterator's values read ahead here and not yet consumed (and its end, if read), taken
    out of the stand-in: it is going back to the candidate, which must see them first."""
    if isinstance(obj, type):
        return None
    state = object.__getattribute__(obj, "__dict__")
    values, end = state.pop("_ar_buffer", None), state.pop("_ar_end", None)
    state.pop("_ar_bulk", None)
    if not values and end is None:
        return None
    return {"values": list(values or ()), "end": end}


def length_hint(self: Any) -> Any:
    """Asked by list(), tuple(), sorted(), str.join()...: a consumer that takes every element,
    so the elements may come in batches (the same calls in the same order, fewer trips)."""
    state = object.__getattribute__(self, "__dict__")
    state.setdefault("_ar_bulk", 16)
    return NotImplemented


def default_repr(self: Any) -> str:
    cls = type(self)
    return f"<{cls.__module__}.{cls.__qualname__} object at {id(self):#x}>"


def _exit(name: str, owner: int) -> Any:
    def forward(self: Any, kind: Any, value: Any, tb: Any) -> Any:
        answer = _special(self, "__exit__", owner, [kind, value, None])
        if value is not None and (
            not isinstance(value, Exception) or isinstance(value, AssertionError)
        ):
            return False  # the candidate never swallows an assertion of ours, nor a BaseException
        return answer

    return forward


def _call(name: str, owner: int) -> Any:
    def forward(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        peer, _ = ref(self)
        encoded = peer.encode_args((), kwargs)["kwargs"]
        return _special(self, "__call__", owner, list(args), kwargs=encoded)

    return forward


def class_getitem(cls: Any, item: Any) -> Any:
    peer, hid = ref(standin_base(cls))
    return ask(peer, "dunder", target=hid, name="__class_getitem__", args=peer.encode([item]))


FORWARDERS: dict[str, Any] = {
    "__call__": _call,
    "__iter__": _iter,
    "__next__": lambda name, owner: _next,
    "__length_hint__": lambda name, owner: length_hint,
    "__repr__": _checked("__repr__", str),
    "__str__": _checked("__str__", str),
    "__exit__": _exit,
    "__hash__": _checked("__hash__", int),
    "__eq__": _eq,
    "__ne__": _eq,
    "__len__": _checked("__len__", int),
    "__bool__": _checked("__bool__", bool),
}
"""Special methods with their own forwarder (the rest: `dunder`), made per class: (name, owner)."""


def method(name: str, owner: int) -> Any:
    def call(self: Any, /, *args: Any, **kwargs: Any) -> Any:
        peer, hid = ref(self)
        return ask(
            peer, "method", target=hid, name=name, via=owner, **call_args(peer, args, kwargs)
        )

    call.__name__ = name
    return call


class Bound:
    """A class-level method of the candidate (classmethod, staticmethod) of the class `owner`:
    called on the class it is read from (a trusted subclass's stand-in class, too)."""

    def __init__(self, name: str, owner: int) -> None:
        self.name, self.owner = name, owner

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is not None:  # read on an object: its own attribute of that name comes first
            peer, hid = ref(obj)
            return ask(peer, "getattr", target=hid, name=self.name)
        cls = owner if owner is not None else type(obj)
        peer, hid = ref(cls) if "_ar" in cls.__dict__ else subclass_of(cls)
        name, via = self.name, self.owner

        def call(*args: Any, **kwargs: Any) -> Any:
            return ask(
                peer, "method", target=hid, name=name, via=via, **call_args(peer, args, kwargs)
            )

        call.__name__ = name
        return call


class Doc:
    """`__doc__` of a stand-in class and of its instances, read from the candidate when asked."""

    def __init__(self, text: Any) -> None:
        self.text = text

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            if self.text is None and owner is not None and "_ar" in owner.__dict__:
                peer, hid = owner.__dict__["_ar"]
                self.text = ask(peer, "getattr", target=hid, name="__doc__") or ""
            return self.text or None
        state = object.__getattribute__(obj, "__dict__")
        if "_ar_doc" not in state:
            peer, hid = ref(obj)
            state["_ar_doc"] = ask(peer, "getattr", target=hid, name="__doc__")
        return state["_ar_doc"]


def init(owner: int) -> Any:
    """A stand-in class's __init__, only ever called by a trusted subclass's `super().__init__`:
    the candidate's __init__ of that class, on the candidate's object."""

    def __init__(self: Any, /, *args: Any, **kwargs: Any) -> None:
        peer, hid = ref(self)
        ask(peer, "method", target=hid, name="__init__", via=owner, **call_args(peer, args, kwargs))

    return __init__
