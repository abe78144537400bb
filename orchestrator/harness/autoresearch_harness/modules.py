"""Stand-ins of the implementation's modules and functions.

A module of the implementation imported on the trusted side is a `RemoteModule`:
its names are read once at import (plain values by value, the rest as stand-ins)
so `dir()`, `__all__`, star imports and re-exports behave as a module's. A
candidate function is a real function here that forwards its calls, so
`inspect.isfunction`, `__name__`, `__doc__`, `inspect.signature` and pickling by
name behave as they do for the candidate's.
"""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any

from .peer import Peer
from .standins import DATA_DUNDERS, PROBES, ask, call_args, ref
from .text import CandidateText


def make_function(peer: Peer, hid: int, extra: Any) -> Any:
    """The stand-in of a candidate function: a real function here, which forwards its calls.

    So `inspect.isfunction`, `__name__`, `__doc__`, `inspect.signature` and pickling by
    name behave as they do for the candidate's; its code is ours (one call to the worker).
    """
    extra = extra if isinstance(extra, dict) else {}

    def candidate_function(*args: Any, **kwargs: Any) -> Any:
        return ask(peer, "call", target=hid, **call_args(peer, args, kwargs))

    for key in ("__name__", "__qualname__", "__module__", "__doc__"):
        value = extra.get(key)
        if isinstance(value, str):
            setattr(
                candidate_function, key, CandidateText(value) if key == "__doc__" else str(value)
            )
    if "__wrapped__" in extra:
        candidate_function.__wrapped__ = extra["__wrapped__"]  # type: ignore[attr-defined]
    signature = _signature(extra.get("signature"))
    if signature is not None:
        candidate_function.__signature__ = signature  # type: ignore[attr-defined]
    candidate_function.__dict__["_ar"] = (peer, hid)
    return candidate_function


def _signature(params: Any) -> inspect.Signature | None:
    if not isinstance(params, list):
        return None
    try:
        return inspect.Signature(
            [
                inspect.Parameter(
                    str(name),
                    inspect._ParameterKind(kind),
                    default=default if has_default else inspect.Parameter.empty,
                )
                for name, kind, has_default, default in params
            ]
        )
    except (TypeError, ValueError):
        return None


# -- modules ------------------------------------------------------------------


class RemoteModule(types.ModuleType):
    """A module of the implementation: its namespace as the candidate's worker imported it.

    The module's names are read once when it is imported (plain values by value,
    the rest as stand-ins) so `dir()`, `__all__`, star imports and re-exports
    behave as a module's; a name read later that was not there is asked of the
    candidate; a name set here is set there too.
    """

    def __getattr__(self, name: str) -> Any:
        if name in PROBES or (name.startswith("__") and name not in DATA_DUNDERS):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        if "__path__" in self.__dict__ and name.isidentifier():  # a submodule not imported yet
            try:
                return importlib.import_module(f"{self.__name__}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{self.__name__}.{name}":
                    raise
        peer, hid = ref(self)
        return ask(peer, "getattr", target=hid, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        ref = self.__dict__.get("_ar")
        local = name.startswith("__") or name == "_ar" or ref is None
        if ref is not None and not local and not isinstance(value, RemoteModule):
            peer, hid = ref
            ask(peer, "setattr", target=hid, name=name, value=peer.encode(value))
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        ref = self.__dict__.get("_ar")
        if ref is not None and not name.startswith("__"):
            peer, hid = ref
            ask(peer, "delattr", target=hid, name=name)
        super().__delattr__(name)

    def __repr__(self) -> str:
        where = self.__dict__.get("__file__")
        return f"<module {self.__name__!r} of the candidate{f' from {where!r}' if where else ''}>"


def fill_module(module: RemoteModule, peer: Peer, answer: dict[str, Any]) -> None:
    """The namespace the worker read at import (`answer`: module reference and names)."""
    module.__dict__["_ar"] = (peer, answer["hid"])
    for name, value in answer["names"].items():
        if isinstance(name, str) and name not in _MODULE_OWN:
            module.__dict__[str(name)] = value


_MODULE_OWN = frozenset(("__name__", "__file__", "__path__", "__spec__", "__loader__",
                         "__package__", "__cached__", "__builtins__", "_ar"))  # fmt: skip
