"""The stand-in of a candidate class: a real class here, made from the candidate's description.

Its bases are the stand-ins of the candidate's bases (and the builtin exception
classes as themselves, so `except` works; never SystemExit, KeyboardInterrupt or
GeneratorExit); it registers with the `collections.abc` ABCs the candidate's
class is one of; its methods and special methods are forwarders.
"""

from __future__ import annotations

import collections
import collections.abc
from typing import Any

from . import names
from .descriptions import STATELESS
from .forwarders import (
    FORWARDERS,
    Bound,
    Doc,
    class_getitem,
    default_repr,
    dunder,
    init,
    length_hint,
    method,
)
from .peer import Peer
from .standins import Instance, StandInMeta
from .text import CandidateText

_ABCS = ("Mapping", "MutableMapping", "Sequence", "MutableSequence", "Set", "MutableSet",
         "MappingView", "KeysView", "ItemsView", "ValuesView")  # fmt: skip


_FLAGS = {  # the description's word -> the stand-in class's marker
    "callable_only": "_ar_callable_only",
    "function": "_ar_function",
    "iter_self": "_ar_iterator",
    "eager": "_ar_eager",
}


def make_class(peer: Peer, hid: int, desc: dict[str, Any], bases: list[Any], meta: Any) -> type:
    """The stand-in for the candidate's class `hid`, described by `desc`."""
    name = str(desc.get("name") or "candidate")
    mirrored = tuple(
        b for b in bases if isinstance(b, type) and ("_ar" in b.__dict__ or _builtin_exception(b))
    )
    mirrored += tuple(STATELESS[n] for n in desc.get("std", ()) if n in STATELESS)
    if not any(issubclass(b, Instance) for b in mirrored):
        mirrored = (*mirrored, Instance)
    if desc.get("metaclass"):
        mirrored = (*(b for b in mirrored if b is not Instance), StandInMeta)
    ns: dict[str, Any] = {
        "_ar": (peer, hid),
        "__module__": CandidateText(str(desc.get("module") or "candidate")),
        "__qualname__": CandidateText(str(desc.get("qualname") or name)),
        "__doc__": Doc(None),
    }
    for flag, attribute in _FLAGS.items():
        if desc.get(flag):
            ns[attribute] = True
    for special in desc.get("dunders", ()):
        if special == "__hash__=None":
            ns["__hash__"] = None
        elif special in names.SPECIAL:
            ns[special] = FORWARDERS.get(special, dunder)(special, hid)
    if "__eq__" in ns and "__hash__" not in ns and "__hash__=None" not in desc.get("dunders", ()):
        ns["__hash__"] = object.__hash__  # the candidate's is object's: identity, kept here
    if (
        "__repr__" not in ns
        and not desc.get("metaclass")
        and not any("_ar" in b.__dict__ for b in mirrored)
    ):
        ns["__repr__"] = default_repr
    if "__next__" in ns:
        ns.setdefault("__length_hint__", length_hint)
    if desc.get("class_getitem"):
        ns["__class_getitem__"] = classmethod(class_getitem)
    if not desc.get("metaclass"):
        ns["__init__"] = init(hid)
    for name_ in desc.get("methods", ()):
        if isinstance(name_, str) and not name_.startswith("__"):
            ns[name_] = method(name_, hid)
    for name_ in desc.get("classmethods", ()):
        if isinstance(name_, str) and not name_.startswith("__"):
            ns[name_] = Bound(name_, hid)
    metaclass: type = (
        meta if isinstance(meta, type) and issubclass(meta, StandInMeta) else StandInMeta
    )
    try:
        cls = type.__call__(metaclass, name, mirrored, ns)
    except TypeError:  # bases whose layouts cannot be combined: the candidate's class alone
        cls = type.__call__(
            metaclass, name, (StandInMeta,) if desc.get("metaclass") else (Instance,), ns
        )
    for abc in desc.get("abcs", ()):
        if abc in _ABCS:
            getattr(collections.abc, abc).register(cls)
    return cls  # type: ignore[no-any-return]


def _builtin_exception(cls: type) -> bool:
    """A builtin exception class a stand-in may derive from: never one that ends the evaluator
    (SystemExit, KeyboardInterrupt, GeneratorExit)."""
    return (
        issubclass(cls, BaseException)
        and cls.__module__ == "builtins"
        and not issubclass(cls, SystemExit | KeyboardInterrupt | GeneratorExit)
    )
