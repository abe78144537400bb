"""What the trusted side is told of a candidate class, to make its stand-in (`classes.py`)."""

from __future__ import annotations

import builtins
import collections.abc
import datetime
import types
from collections.abc import Callable
from typing import Any

from . import names
from .ops import EAGER, iter_self

STATELESS = {"datetime.tzinfo": datetime.tzinfo}
"""Standard classes with no state of their own that C code checks for (`datetime(...,
tzinfo=x)` wants a tzinfo): a stand-in derives from the trusted side's own, its methods still
the candidate's."""

ABCS = ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Set", "MutableSet",
        "MappingView", "KeysView", "ItemsView", "ValuesView")  # fmt: skip
CALLABLE_ONLY = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                 types.MethodWrapperType, types.MethodDescriptorType)  # fmt: skip


def builtin_name(value: Any) -> str | None:
    """The name of a builtin both sides may name (`names.SAFE_BUILTINS`), if `value` is one."""
    name = getattr(value, "__name__", None)
    if (
        isinstance(name, str)
        and name in names.SAFE_BUILTINS
        and getattr(builtins, name, None) is value
    ):
        return name
    return None


def describe(cls: type, refer: Callable[[type], Any]) -> dict[str, Any]:
    """What the trusted side mirrors of a class: names, bases (`refer` encodes a candidate class,
    which joins the message's preamble before this one), methods, special methods."""
    bases, methods, classmethods, std = [], [], [], []
    for base in cls.__bases__:
        if base is object:
            continue
        if base in STATELESS.values():
            std.append(next(k for k, v in STATELESS.items() if v is base))
            continue
        if builtin_name(base) is not None and issubclass(base, BaseException):
            bases.append({"$g": f"builtins:{base.__name__}"})
        elif base.__module__ == "builtins" and base is not type:
            methods += [n for n, v in vars(base).items() if not n.startswith("_") and callable(v)]
        elif base is not type:
            bases.append(refer(base))
    for name, value in list(vars(cls).items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(value, classmethod | staticmethod):
            classmethods.append(name)
        elif isinstance(value, types.FunctionType | types.MethodDescriptorType):
            methods.append(name)
    return {
        "name": cls.__name__,
        "qualname": getattr(cls, "__qualname__", cls.__name__),
        "module": str(getattr(cls, "__module__", "") or ""),
        "bases": bases,
        "std": std,
        "dunders": names.special_methods(cls),
        "methods": sorted(set(methods)),
        "classmethods": classmethods,
        "abcs": [a for a in ABCS if issubclass(cls, getattr(collections.abc, a))],
        "metaclass": issubclass(cls, type),
        "callable_only": issubclass(cls, CALLABLE_ONLY),
        "function": cls in (types.FunctionType, types.BuiltinFunctionType),
        "eager": cls.__module__ == "builtins" and cls.__name__ in EAGER,
        "iter_self": iter_self(cls),
        "class_getitem": "__class_getitem__" in vars(cls),
    }
