"""The trusted side of a session: what the candidate may hold of ours, and what it may do with it.

A value the trusted side passes that is not plain data (a generator, an iterator,
a function or lambda, a bound method, a class, an object of the evaluator's)
crosses as a capability. The candidate may call it, iterate it, take its length,
index it, ask what it contains, compare and hash it, use it as a context
manager: each is a request served here, by trusted code, with the candidate's
arguments as plain data or stand-ins. It may read a public attribute only of an
object or class the evaluator itself defined (a module loaded from the trusted
tree) or of a `unittest.mock` object. Nothing else: never an attribute walk from
a trusted object into frames, globals, modules, builtins or classes (`__class__`,
`__globals__`, `gi_frame`, `__reduce__`, `__subclasses__`...).

What has a global name outside the trusted tree (`len`, `str.lower`,
`operator.add`, `itertools.count`, `print`, a stdlib enum member) crosses by that
name: the candidate gets its own object of that name, in its own process.
"""

from __future__ import annotations

import argparse
import builtins
import enum
import io
import operator
import os
import sys
import threading
import types
from typing import Any

from . import modules, names, wire
from .kinds import one_of, standard_class
from .peer import Gone, Peer

_SERVED = frozenset(
    ("__call__", "__len__", "__iter__", "__next__", "__reversed__", "__contains__",
     "__getitem__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
     "__bool__", "__repr__", "__str__", "__enter__", "__exit__", "__int__", "__float__",
     "__index__", "__length_hint__", "__fspath__", "__format__", "__abs__", "__neg__",
     *names.SPECIAL[names.SPECIAL.index("__add__"):])
)  # fmt: skip
"""What the candidate may ask of a trusted object (never __setattr__, __del__...)."""

MUTATORS = frozenset(("__setitem__", "__delitem__"))
"""Served only for an object of a class the evaluator defined (or a mock): a test's own cache or
registry that it hands the candidate to fill, as it would in one process."""

_LOCK = frozenset(("acquire", "release", "locked"))

_PUBLIC: dict[type, frozenset[str]] = {
    types.GeneratorType: frozenset(("send", "throw", "close")),
    io.TextIOWrapper: frozenset(("read", "readline", "readlines", "readable", "seekable", "tell",
                                 "seek", "name", "mode", "encoding", "closed", "buffer")),
    io.BufferedReader: frozenset(("read", "read1", "readline", "readlines", "readable", "tell",
                                  "seek", "seekable", "name", "mode", "closed", "peek")),
    type(threading.Lock()): _LOCK,
    type(threading.RLock()): _LOCK,
    threading.Condition: frozenset((*_LOCK, "wait", "wait_for", "notify", "notify_all")),
    threading.Semaphore: _LOCK,
    threading.BoundedSemaphore: _LOCK,
    threading.Event: frozenset(("set", "clear", "is_set", "wait")),
    threading.Barrier: frozenset(("wait", "reset", "abort", "parties", "n_waiting", "broken")),
}  # fmt: skip
"""Public attributes the candidate may read of a few standard types (a file: its reading side
only; never `write`, which could reach the evaluator's own output)."""

_DESCRIPTIVE = frozenset(("__name__", "__qualname__", "__module__", "__doc__", "__wrapped__"))
"""Dunder attributes of a trusted callable the candidate may read (text; `__wrapped__` is another
callable, a capability in turn). Never `__globals__`, `__code__`, `__closure__`, `__self__`..."""

_RECORDS = (io.StringIO, io.BytesIO, argparse.Namespace, types.SimpleNamespace)
"""Standard types whose public attributes are the evaluator's own data."""

_CALLABLE_ONLY = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                  types.LambdaType, types.MethodWrapperType)  # fmt: skip


def signature(fn: Any) -> list[list[Any]]:
    """`fn`'s parameters, for `inspect.signature` on the candidate's side: [name, kind, has a
    default] each. Only of a Python function the trusted side defined (bound, or in a
    `functools.partial`), read from its code alone: never a `__signature__`, a text signature
    or a `__wrapped__` chain another object could supply (inspect evaluates a text signature's
    defaults as names, which would read any global). No default values (a test's checker may
    bind the answer it expects) and no annotations."""
    import functools
    import inspect

    inner = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    if isinstance(inner, types.MethodType):
        inner = inner.__func__
    if type(inner) is not types.FunctionType or "__signature__" in vars(inner):
        raise AttributeError("__signature__: served for a test's own functions only")
    try:
        params = inspect.signature(fn, follow_wrapped=False).parameters.values()
    except (TypeError, ValueError):
        raise AttributeError("__signature__") from None
    return [[p.name, int(p.kind), p.default is not p.empty] for p in params]


class Rules:
    """What the candidate may name, read and call of the trusted side (see the module docstring)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def global_name(self, obj: Any) -> str | None:
        """`module:qualname` when `obj` is that global of a module outside the trusted tree."""
        t = type(obj)
        if isinstance(obj, type) or t is types.BuiltinFunctionType or t is types.FunctionType:
            if t is types.BuiltinFunctionType and not (
                obj.__self__ is None or isinstance(obj.__self__, types.ModuleType)
            ):
                return None
            module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        elif one_of(t, (types.MethodDescriptorType, types.WrapperDescriptorType,
                               types.ClassMethodDescriptorType)):  # fmt: skip
            owner = obj.__objclass__
            module, qual = owner.__module__, f"{owner.__qualname__}.{obj.__name__}"
        elif isinstance(obj, enum.Enum):
            module, qual = t.__module__, f"{t.__qualname__}.{obj.name}"
        else:
            return None
        if not (isinstance(module, str) and isinstance(qual, str)) or "<" in qual:
            return None
        home = sys.modules.get(module)
        if home is None or module == "__main__" or self.trusted_module(home):
            return None
        if (
            getattr(home, "__file__", None) is None
            and module.split(".")[0] not in sys.stdlib_module_names
        ):
            return None  # made at run time, not importable by name on the other side
        found: Any = home
        for part in qual.split("."):
            found = getattr(found, part, None)
        return f"{module}:{qual}" if found is obj else None

    def trusted_module(self, module: Any) -> bool:
        """A module of the trusted tree (the evaluator's, or a stand-in of the implementation's)."""
        where = getattr(module, "__file__", None)
        if isinstance(module, modules.RemoteModule):
            return True
        if where is None and module is sys.modules.get("__main__"):
            return True  # the evaluator's own `python -c`
        return isinstance(where, str) and os.path.abspath(where).startswith(self.root + os.sep)

    # -- what the candidate sends --------------------------------------------
    def readable(self, target: Any, name: Any) -> Any:
        """The attribute `name` of the trusted `target`, if the candidate may read it (see the module docstring)."""
        if name in _DESCRIPTIVE and callable(target):  # what functools.wraps copies, say
            value = getattr(target, name)  # absent: an AttributeError, as hasattr expects
            if value is None or isinstance(value, str) or name == "__wrapped__":
                return value
            raise AttributeError(name)
        if name == "__signature__" and callable(target):
            return signature(target)
        if not isinstance(name, str) or name.startswith("_") or not name.isidentifier():
            raise AttributeError(f"{name!r}: the candidate may read public attributes only")
        owner = target if isinstance(target, type) else type(target)
        if standard_class(owner) and name in _PUBLIC.get(owner, ()):
            return getattr(target, name)
        if _mock(owner) and name not in _MOCK_RECORDS and hasattr(owner, name):
            raise AttributeError(  # configure_mock, reset_mock, assert_*: the test's, not its
                f"{name}: of a mock the candidate may read its calls and its child mocks only"
            )
        if not (self.evaluators(owner) or _mock(owner) or one_of(owner, _RECORDS)):
            raise AttributeError(
                f"{name}: the candidate may read attributes only of the evaluator's own objects"
            )
        return getattr(target, name)

    def may_mutate(self, cls: type) -> bool:
        """The candidate may set and delete items of an object of `cls` (see `MUTATORS`)."""
        return self.evaluators(cls) or _mock(cls)

    def evaluators(self, cls: type) -> bool:
        """A class the evaluator itself defined (in a module loaded from the trusted tree)."""
        home = sys.modules.get(getattr(cls, "__module__", "") or "")
        return (
            home is not None
            and not isinstance(home, modules.RemoteModule)
            and "_ar" not in cls.__dict__
            and self.trusted_module(home)
        )

    # -- errors ----------------------------------------------------------------

    def plain_value(self, value: Any) -> tuple[Any] | None:
        """An int, float or str of a subclass defined outside the trusted tree, as its base value
        (a flag of the standard library, say); None for anything else."""
        for base in (int, float, str):
            if isinstance(value, base) and not self.evaluators(type(value)):
                return (base(value),)
        return None


def _not_our_output(target: Any) -> None:
    """The candidate never writes the trusted process's own output (the metric channel), even
    when a test hands it `sys.stdout.write`: what it writes would read as the evaluator's."""
    owner = getattr(target, "__self__", None)
    if owner is None or not hasattr(owner, "fileno"):
        return
    try:
        fd = owner.fileno()
    except (OSError, ValueError, AttributeError):
        return
    if fd in (1, 2):
        raise PermissionError("the candidate may not write the evaluator's stdout or stderr")


def _builtin_base(cls: type) -> str:
    """The nearest builtin exception class of `cls` (by name)."""
    return next(
        c.__name__
        for c in cls.__mro__
        if c.__module__ == "builtins" and c.__name__ in names.EXCEPTIONS
    )


def _encodable(peer: Peer, args: tuple[Any, ...]) -> bool:
    try:
        peer.encode(list(args))
    except (TypeError, wire.WireError, ValueError):
        return False
    return True


def _safe_global(name: Any) -> Any:
    if not isinstance(name, str) or not name.startswith("builtins:"):
        raise wire.WireError("the candidate may name builtins only")
    short = name.removeprefix("builtins:")
    if short not in names.SAFE_BUILTINS:
        raise wire.WireError(f"the candidate may not name builtins.{short}")
    return getattr(builtins, short)


_MOCK_RECORDS = frozenset(("called", "call_count", "call_args", "call_args_list", "mock_calls",
                           "method_calls", "return_value"))  # fmt: skip
"""What the candidate may read of a test's mock besides its child mocks: what it recorded."""


def _mock(cls: type) -> bool:
    mock = sys.modules.get("unittest.mock")
    return mock is not None and issubclass(cls, mock.NonCallableMock)


def _next(iterator: Any, count: int) -> dict[str, Any]:
    """Up to `count` values of a trusted iterator, stopping at its end or its error."""
    values: list[Any] = []
    try:
        for _ in range(count):
            values.append(next(iterator))
    except StopIteration:
        return {"values": values, "done": True}
    except Gone:
        raise
    except Exception as e:
        return {"values": values, "done": False, "error": e}
    return {"values": values, "done": False}


_SIMPLE: dict[str, Any] = {
    "__len__": lambda t, a: len(t),
    "__bool__": lambda t, a: bool(t),
    "__hash__": lambda t, a: hash(t),
    "__repr__": lambda t, a: repr(t),
    "__str__": lambda t, a: str(t),
    "__iter__": lambda t, a: iter(t),
    "__contains__": lambda t, a: a[0] in t,
    "__getitem__": lambda t, a: t[a[0]],
    "__call__": lambda t, a: t(*a),
    "__index__": lambda t, a: operator.index(t),
    "__int__": lambda t, a: int(t),
    "__float__": lambda t, a: float(t),
    "__reversed__": lambda t, a: reversed(t),
    "__length_hint__": lambda t, a: operator.length_hint(t),
    "__enter__": lambda t, a: t.__enter__(),
}
