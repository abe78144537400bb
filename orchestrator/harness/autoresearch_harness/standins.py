"""What the trusted side holds of the candidate's: stand-in modules, classes and objects.

A candidate object crosses as a reference; here it becomes an instance of a
stand-in class that mirrors the candidate's class: its name and module, its
bases (candidate classes by their stand-ins, builtin exception classes as
themselves), its methods and the special methods it has. So `isinstance`,
`except MyError`, `issubclass`, `pytest.raises` and star imports work on the
trusted side, while everything the object does is asked of the candidate:
reading an attribute, calling, indexing, iterating, comparing, hashing.

What comes back is checked, never trusted:
- strings are `CandidateText` (they print quoted wherever they could pass for
  the evaluator's own output), and so are the candidate's reprs;
- `==` that answers True is asked again against a canary the candidate cannot
  tell from a real value: an object that claims to equal anything raises
  `CandidateLies` instead of passing an assertion;
- a candidate context manager never swallows an AssertionError raised in its
  block (nor anything that is not an Exception), and candidate code never swallows
  one the test's own code raised in a callback it called: when the call returns as
  if nothing happened, the test's assertion is raised here (`swallowed`);
- nothing is unpickled here: a stand-in pickles as the candidate's own pickle
  bytes, which only the candidate ever loads.
"""

from __future__ import annotations

import collections
import collections.abc
import datetime
import threading
import types
from collections.abc import Callable
from typing import Any

from .peer import Gone, Peer
from .text import CandidateError, CandidateGone, CandidateText

PROBES = frozenset(
    ("_pytestfixturefunction", "_fixture_function_marker", "pytestmark", "_is_coroutine",
     "_is_coroutine_marker", "__wrapped__", "_partialmethod", "__signature__",
     "__array_interface__", "__array_struct__", "__array__", "__array_priority__")
)  # fmt: skip
"""Attributes tools probe for on any object: answered 'absent' here, never asked of the candidate."""


DATA_DUNDERS = frozenset(("__name__", "__qualname__", "__module__", "__version__", "__members__",
                          "__annotations__", "__all__", "__slots__"))  # fmt: skip
"""Dunder attributes read from the candidate (other dunders are absent on a stand-in)."""

_loader: list[Callable[[bytes], Any]] = []
"""What a pickled stand-in loads with (`pickled_by`)."""


class CandidateLies(CandidateError):
    """A candidate object answered a check with a claim it cannot honestly make."""


_VERDICTS = threading.local()
"""Per thread: the test's own failures (AssertionError, pytest's outcomes) raised in callbacks
the candidate called, while the call that led there is in flight."""


def swallowed(exc: BaseException) -> None:
    """Note a failure of the test's own code on its way to the candidate (`ask` raises it here
    should the candidate's call end as if nothing had happened)."""
    _VERDICTS.__dict__.setdefault("raised", []).append(exc)


def ask(peer: Peer, op: str, **fields: Any) -> Any:
    """A request to the candidate; its answer as a value of this side (CandidateGone when the
    worker is gone: it exited, was killed, broke the wire or ran past the per-call limit)."""
    __tracebackhide__ = True
    raised: list[BaseException] = _VERDICTS.__dict__.setdefault("raised", [])
    mark = len(raised)
    try:
        answer = peer.request(op, CandidateText, **fields)
    except Gone as e:
        raise CandidateGone("CandidateGone", str(e)) from None
    finally:
        verdicts = raised[mark:]
        del raised[mark:]
    if verdicts:  # the candidate caught the test's own failure and went on: it stands
        raise verdicts[0]
    return answer


def ref(obj: Any) -> tuple[Peer, int]:
    try:
        return object.__getattribute__(obj, "__dict__")["_ar"]  # type: ignore[no-any-return]
    except (KeyError, AttributeError):
        raise TypeError(f"{type(obj).__name__} is not a candidate object") from None


def reference(obj: Any) -> tuple[Peer, int] | None:
    """(session, id) of a stand-in, or None for anything else."""
    try:
        ref = object.__getattribute__(obj, "__dict__").get("_ar")
    except (AttributeError, TypeError):
        return None
    return ref if isinstance(ref, tuple) else None


def call_args(peer: Peer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    return peer.encode_args(args, kwargs)


# -- classes ------------------------------------------------------------------


class StandInMeta(type):
    """The metaclass of stand-in classes: class attributes and calls go to the candidate."""

    def __call__(cls, /, *args: Any, **kwargs: Any) -> Any:
        own = type.__getattribute__(cls, "__dict__")
        if "_ar" not in own:
            return _subclass_instance(cls, args, kwargs)
        if (
            issubclass(cls, type)
            and len(args) == 3
            and type(args[2]) is dict
            and "__qualname__" in args[2]
        ):
            # a class statement here whose metaclass is the candidate's: the class is made here
            # (its members are the evaluator's), a trusted subclass like any other
            return type.__call__(cls, *args, **kwargs)
        peer, hid = own["_ar"]
        return ask(peer, "call", target=hid, **call_args(peer, args, kwargs))

    def __getattr__(cls, name: str) -> Any:
        if name in PROBES or (name.startswith("__") and name not in DATA_DUNDERS):
            raise AttributeError(name)
        own = type.__getattribute__(cls, "__dict__")
        if "_ar" not in own:
            raise AttributeError(name)
        peer, hid = own["_ar"]
        return ask(peer, "getattr", target=hid, name=name)

    def __setattr__(cls, name: str, value: Any) -> None:
        own = type.__getattribute__(cls, "__dict__")
        if name.startswith("__") or "_ar" not in own:
            type.__setattr__(cls, name, value)
            return
        peer, hid = own["_ar"]
        ask(peer, "setattr", target=hid, name=name, value=peer.shared.share(peer, value))


def _subclass_instance(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """An instance of a trusted subclass of a candidate class.

    The candidate gets a subclass of its class whose members call the trusted
    subclass's (so its own code, calling `self.method()`, reaches them), the object is
    made there, and its `__init__` runs where it is defined: the trusted subclass's
    here (its `super().__init__` goes to the candidate), else the candidate's there.
    """
    base = standin_base(cls)
    peer, sub = subclass_of(cls)
    obj = ask(peer, "new", target=sub, **call_args(peer, args, kwargs))
    init = next((c for c in cls.__mro__ if "__init__" in c.__dict__), base)
    if "_ar" in init.__dict__:  # the candidate's __init__, in its own process
        ask(peer, "method", target=ref(obj)[1], name="__init__", via=init.__dict__["_ar"][1],
            **call_args(peer, args, kwargs))  # fmt: skip
    else:
        init.__init__(obj, *args, **kwargs)  # type: ignore[misc]
    return obj


def subclass_of(cls: type) -> tuple[Peer, int]:
    """The candidate's class standing for the trusted subclass `cls` (made the first time)."""
    sub = cls.__dict__.get("_ar_sub")
    if sub is None:
        base = standin_base(cls)
        peer, base_hid = base.__dict__["_ar"]
        members = _members(cls, base)
        made = ask(
            peer, "subclass", target=base_hid, name=cls.__name__, members=peer.encode(members)
        )
        sub = ref(made)
        type.__setattr__(cls, "_ar_sub", sub)
        peer.side.classes[sub[1]] = cls  # type: ignore[attr-defined]
    return sub  # type: ignore[no-any-return]


_NOT_MEMBERS = frozenset(("__module__", "__qualname__", "__doc__", "__dict__", "__weakref__",
                          "__init_subclass__", "__slots__", "__annotations__", "_ar_sub"))  # fmt: skip


def _members(cls: type, base: type) -> dict[str, Any]:
    """What the trusted classes between `cls` and the candidate's `base` define."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass is base or "_ar" in klass.__dict__ or klass is Instance:
            break
        for name, value in klass.__dict__.items():
            if name in out or name in _NOT_MEMBERS:
                continue
            if isinstance(value, staticmethod):
                out[name] = ("staticmethod", value.__func__)
            elif isinstance(value, classmethod):
                out[name] = ("classmethod", value.__func__)
            elif isinstance(value, property):
                out[name] = ("property", value.fget, value.fset, value.fdel)
            elif isinstance(value, types.FunctionType):
                out[name] = ("function", value)
            elif not name.startswith("__"):
                out[name] = ("data", value)
    return out


def standin_base(cls: type) -> type:
    for base in cls.__mro__:
        if "_ar" in base.__dict__:
            return base
    return cls


class Instance:
    """The base of every stand-in object (see the module docstring)."""

    def __getattr__(self, name: str) -> Any:
        if name in PROBES or (name.startswith("__") and name not in DATA_DUNDERS):
            raise AttributeError(name)
        if name.startswith("_") and type(self).__dict__.get("_ar_callable_only"):
            raise AttributeError(name)
        peer, hid = ref(self)
        return ask(peer, "getattr", target=hid, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__") or name.startswith("_ar"):
            object.__setattr__(self, name, value)
            return
        peer, hid = ref(self)
        ask(peer, "setattr", target=hid, name=name, value=peer.shared.share(peer, value))

    def __delattr__(self, name: str) -> None:
        if name.startswith("__") or name.startswith("_ar"):
            object.__delattr__(self, name)
            return
        peer, hid = ref(self)
        ask(peer, "delattr", target=hid, name=name)

    def __reduce_ex__(self, protocol: Any) -> Any:
        peer, hid = ref(self)
        data = ask(peer, "pickle", target=hid, protocol=protocol)
        if type(data) is not bytes:
            raise TypeError("the candidate did not pickle its object")
        return (_loader[0], (data,))

    def __copy__(self) -> Any:
        peer, hid = ref(self)
        return ask(peer, "copy", target=hid, deep=False)

    def __deepcopy__(self, memo: Any) -> Any:
        peer, hid = ref(self)
        return ask(peer, "copy", target=hid, deep=True)


def pickled_by(loader: Callable[[bytes], Any]) -> None:
    """Stand-ins pickle as a call of `loader` on the candidate's own pickle bytes: the hook's
    `from_candidate_pickle`, registered when the hook is imported (only the hook's session makes
    stand-ins, and pickle imports the hook by name to load one)."""
    _loader[:] = [loader]


def make_instance(peer: Peer, cls: type, extra: Any) -> Any:
    """A stand-in of class `cls` for the candidate object `hid` (bound by the caller)."""
    obj: Any
    if issubclass(cls, BaseException):
        obj = BaseException.__new__(cls)
        args = extra.get("args") if isinstance(extra, dict) else None
        obj.args = tuple(args) if isinstance(args, list | tuple) else ()
        obj.__suppress_context__ = bool(isinstance(extra, dict) and extra.get("suppress"))
    elif issubclass(cls, datetime.tzinfo):  # a stateless standard base (descriptions.STATELESS)
        obj = datetime.tzinfo.__new__(cls)
    else:
        obj = object.__new__(cls)
    if isinstance(extra, dict):
        state = object.__getattribute__(obj, "__dict__")
        for key in ("__name__", "__qualname__", "__module__"):
            if isinstance(extra.get(key), str):
                state[key] = extra[key]
        if "__wrapped__" in extra:  # a wrapper (functools.update_wrapper) and what it wraps
            state["__wrapped__"] = extra["__wrapped__"]
        step = extra.get("ahead")
        if isinstance(step, dict) and isinstance(step.get("values"), list):
            state["_ar_buffer"] = collections.deque(step["values"])
            error = step.get("error")
            if isinstance(error, BaseException):
                state["_ar_end"] = error
            elif step.get("done"):
                state["_ar_end"] = StopIteration()
    return obj
