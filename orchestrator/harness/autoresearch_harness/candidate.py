"""The candidate's half of a session: what it sends, what it takes, what it serves.

Runs in the candidate's worker (`worker.py`), in the candidate's process, where
candidate code can change anything: nothing here is believed on the trusted
side, it only has to be right for an honest candidate.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import inspect
import os
import pickle
import sys
import threading
import traceback
import types
import warnings
from typing import Any

from . import commands, names, values, wire
from .clock import CallTimeout, Clock
from .descriptions import CALLABLE_ONLY, builtin_name, describe
from .handles import TrustedError, capability_class, held_reference
from .ops import OPS, Held, ReadAhead, as_attribute
from .peer import Peer
from .seeding import RandomSync


class CandidateSide:
    """The candidate's half of a `Peer` (see `peer.Side`)."""

    def __init__(self, workspace: str, trusted_root: str, clock: Clock) -> None:
        self.workspace, self.trusted_root, self.clock = workspace, trusted_root, clock
        self.described: set[int] = set()
        self.random = RandomSync(leader=False)
        self.warned: list[list[Any]] = []
        self.quiet = False
        """Warnings candidate code issued, for the trusted side to issue again (its filters decide)."""
        warnings.simplefilter("always")
        warnings.showwarning = self._warned
        self.ahead: set[int] = set()
        """Reference ids of the iterators that may be read ahead of the trusted side (`_read`)."""
        self._local = threading.local()
        self._types: dict[int, type] = {}
        self._errors: dict[int, type] = {}

    # -- what we send ----------------------------------------------------------
    def refer(self, peer: Peer, value: Any) -> Any:
        if type(value) is ReadAhead:
            gen = value.generator
            hid, cls = peer.export(gen), self._class_field(peer, type(gen))
            self.ahead.add(hid)
            return {"$m": [hid, cls, {"ahead": peer.encode(value.step)}]}
        if type(value) is Held:
            value = value.value
            shared = peer.shared.tag(peer, value)  # a container the trusted side shared: its own
            if shared is not None:
                return shared
            return {"$m": [peer.export(value), self._class_field(peer, type(value)), None]}
        own = held_reference(value)
        if own is not None:
            return {"$y": own}
        if isinstance(value, types.ModuleType):
            return {"$mod": [value.__name__, peer.export(value)]}
        if isinstance(value, BaseException):
            return self._exception(peer, value)
        name = builtin_name(value)
        if name is not None:
            return {"$g": f"builtins:{name}"}
        if isinstance(value, type):
            if issubclass(value, TrustedError) and "_ar_class" in vars(value):
                return {"$y": value._ar_class}  # type: ignore[attr-defined]
            return self._class_value(peer, value)
        hid, cls = peer.export(value), self._class_field(peer, type(value))
        return {"$m": [hid, cls, _extra(peer, value)]}

    def _class_field(self, peer: Peer, cls: type) -> int:
        """An object's class: its id; described in this message's preamble the first time."""
        hid = peer.export(cls, pin=True)
        if hid not in self.described and hid not in self._pending():
            meta = type(cls)
            meta_ref = {"$g": "builtins:type"} if meta is type else self._class_value(peer, meta)
            desc = describe(cls, lambda base: self._class_value(peer, base))  # bases first
            self._pending()[hid] = [hid, meta_ref, desc]
        return hid

    def _class_value(self, peer: Peer, cls: type) -> Any:
        hid = self._class_field(peer, cls)
        meta = type(cls)
        return {
            "$m": [
                hid,
                {"$g": "builtins:type"} if meta is type else self._class_value(peer, meta),
                None,
            ]
        }

    def _pending(self) -> dict[int, Any]:
        return self._local.__dict__.setdefault("pending", {})  # type: ignore[no-any-return]

    def preamble(self, peer: Peer) -> dict[str, Any] | None:
        out: dict[str, Any] = self.random.outgoing()
        if self.warned:
            caught, self.warned = self.warned, []
            with contextlib.suppress(TypeError, ValueError, wire.WireError):
                out["warnings"] = [peer.encode(w) for w in caught]
        pending = self._pending()
        if pending:
            self.described.update(pending)
            out["classes"] = list(pending.values())
            pending.clear()
        return out or None

    def absorb(self, peer: Peer, frame: dict[str, Any]) -> None:
        if "classes" in frame:
            raise wire.WireError("the trusted side never describes classes")
        self.random.incoming(frame)

    def _exception(self, peer: Peer, exc: BaseException) -> Any:
        t = type(exc)
        if isinstance(exc, TrustedError):  # the trusted side's class: its own object, or a new one
            trusted = getattr(exc, "_ar_trusted", None)
            base = _builtin_base(t)
            return {"$x": [base, _encoded_args(peer, exc), trusted, t._ar_class]}  # type: ignore[attr-defined]
        if isinstance(exc, CallTimeout):
            limit = self.clock.limit_s
            return {
                "$x": [
                    "TimeoutError",
                    [f"the candidate's call ran past the per-call limit of {limit:g} s"],
                ]
            }
        if t.__module__ == "builtins" and t.__name__ in names.EXCEPTIONS:
            if exc.__suppress_context__:  # `raise ... from None`: a test may check it
                return {"$x": [t.__name__, _encoded_args(peer, exc), {"suppress": True}]}
            return {"$x": [t.__name__, _encoded_args(peer, exc)]}
        hid, cls = peer.export(exc), self._class_field(peer, t)  # the class before the args
        extra = {"args": _encoded_args(peer, exc), "suppress": exc.__suppress_context__}
        return {"$m": [hid, cls, extra]}

    # -- what the trusted side sends ---------------------------------------------
    def resolve(self, peer: Peer, tag: str, body: Any) -> Any:
        if tag == "$y":
            if isinstance(body, list) and len(body) == 2:  # an iterator with what was read ahead
                hid, back = body[0], peer.decode(body[1])
                original = peer.exported(hid)
                resumed = _resume(back.get("values", []), original, back.get("end"))
                peer.replace(hid, resumed)
                # the same id now stands for `resumed`: read ahead of it as of the original
                return resumed
            return peer.exported(body)
        if tag == "$g":
            return _global(body)
        if tag == "$x":
            return self._raised(peer, body)
        if tag == "$xc":
            return self._trusted_class(str(body[0]), body[1], body[2])
        if tag == "$m" and isinstance(body, list) and len(body) == 2 and type(body[0]) is int:
            hid, type_ref = body
            cls = self._capability_type(type_ref)
            return peer.stand_in(hid, lambda: self._capability(peer, hid, cls))
        raise wire.WireError(f"the trusted side never sends {tag}")

    def _capability_type(self, ref: Any) -> type:
        if type(ref) is int and ref in self._types:
            return self._types[ref]
        if isinstance(ref, dict) and type(ref.get("k")) is int and isinstance(ref.get("d"), dict):
            cls = self._types[ref["k"]] = capability_class(ref["d"])
            return cls
        raise wire.WireError("a capability of an unknown type")

    def _capability(self, peer: Peer, hid: int, cls: type) -> Any:
        obj: Any = object.__new__(cls)
        object.__getattribute__(obj, "__dict__")["_ar"] = (self, peer, hid)
        return obj

    def _trusted_class(self, base: str, hid: int, name: str) -> type:
        """A class of the trusted side's exceptions, here: `except` it catches them."""
        cls = self._errors.get(hid)
        if cls is None:
            builtin = getattr(builtins, base, Exception) if base in names.EXCEPTIONS else Exception
            if not (isinstance(builtin, type) and issubclass(builtin, BaseException)):
                builtin = Exception
            safe = name if isinstance(name, str) and name.isidentifier() else "TrustedError"
            cls = self._errors[hid] = type(safe, (TrustedError, builtin), {"_ar_class": hid})
        return cls

    def _raised(self, peer: Peer, body: Any) -> BaseException:
        kind, args = body[0], peer.decode(body[1])
        base = getattr(builtins, kind, Exception) if kind in names.EXCEPTIONS else Exception
        if len(body) == 4:  # of an exception class of the trusted side's
            cls = self._trusted_class(kind, body[3], kind)
            exc = cls(*args)
            exc._ar_trusted = body[2]  # type: ignore[attr-defined]
            return exc  # type: ignore[no-any-return]
        try:
            return base(*args)  # type: ignore[no-any-return]
        except Exception:
            return base()  # type: ignore[no-any-return]

    # -- serving the trusted side ------------------------------------------------
    def serve(self, peer: Peer, r: dict[str, Any]) -> Any:
        op = r.get("op")
        with self.clock.running():
            if op == "import":
                return self._import(
                    peer, str(r["name"]), str(r.get("file", "")), list(r.get("path", []))
                )
            if op == "run":
                return commands.run(peer, r, self.workspace)
            if op == "start":
                return commands.start(peer, r, self.workspace)
            if op == "unpickle":
                return pickle.loads(peer.decode(r.get("data")))  # our own bytes, in our own process
            target = peer.exported(r.get("target"))
            name = str(r.get("name", ""))
            args = peer.decode(r.get("args", []))
            kwargs = dict(peer.decode(r.get("kwargs", {"$d": []})))
            self.quiet = r.get("quiet") is True
            try:
                return OPS[str(op)](self, peer, target, name, args, kwargs, r)
            finally:
                self.quiet = False

    def _warned(self, message: Any, category: type, filename: str, lineno: int,
                file: Any = None, line: Any = None) -> None:  # fmt: skip
        if self.quiet:
            return
        path = self.trusted_path(filename)
        self.warned.append([category, str(message)[:10000], path, int(lineno)])

    def trusted_path(self, path: str) -> str:
        rel = os.path.relpath(os.path.abspath(path), self.workspace)
        return path if rel.startswith("..") else os.path.join(self.trusted_root, rel)

    def _import(self, peer: Peer, name: str, file: str, path: list[str]) -> values.Encoded:
        """Import `name` (the implementation's `file`) with the trusted search path, moved here."""
        for entry in reversed(path):
            moved = self.moved(entry)
            if moved is not None and moved not in sys.path:
                sys.path.insert(0, moved)
        module = importlib.import_module(name)
        where = os.path.abspath(getattr(module, "__file__", "") or "")
        expected = os.path.abspath(os.path.join(self.workspace, file))
        if file and where != expected:
            raise ImportError(
                f"{name}: the candidate's side imported {where or 'a module without a file'}, "
                f"not the implementation's {expected}"
            )
        names = []
        for key, value in list(vars(module).items()):
            if key in (
                "__builtins__",
                "__loader__",
                "__spec__",
                "__cached__",
                "__file__",
                "__path__",
            ):
                continue
            if isinstance(value, types.ModuleType) and value.__name__.startswith(name + "."):
                continue  # a submodule: the trusted side imports it by name when it is asked for
            if _large(value):
                continue  # a large table: read when it is asked for
            try:
                names.append([key, peer.encode(as_attribute(value))])
            except (TypeError, ValueError, wire.WireError):
                continue
        hid = peer.export(module, pin=True)
        return values.Encoded({"$d": [["hid", hid], ["names", {"$d": names}]]})

    def moved(self, entry: str) -> str | None:
        rel = os.path.relpath(os.path.abspath(entry), self.trusted_root)
        if rel.startswith(".."):
            return None
        return os.path.normpath(os.path.join(self.workspace, rel))

    def error(self, peer: Peer, exc: BaseException) -> dict[str, Any]:
        if not isinstance(exc, CallTimeout):
            traceback.print_exception(exc)  # to the candidate's log
        if type(exc) in (KeyboardInterrupt, GeneratorExit):
            exc = _Exit(f"{type(exc).__name__}: {exc}")
        try:
            return {"exc": self._exception(peer, exc)}
        except Exception as e:
            return {"exc": {"$x": ["RuntimeError", [f"{type(exc).__name__} (not sendable: {e})"]]}}

    def failed(self, peer: Peer, error: Any) -> BaseException:
        exc = peer.decode(error.get("exc")) if isinstance(error, dict) else None
        return exc if isinstance(exc, BaseException) else RuntimeError("the trusted side failed")


class _Exit(Exception):
    """SystemExit or KeyboardInterrupt in the candidate's code: the call ends, the evaluator goes on."""


def _resume(values: list[Any], rest: Any, end: Any) -> Any:
    """The values read ahead, then the iterator itself (or the error it ended with)."""
    yield from values
    if isinstance(end, BaseException) and not isinstance(end, StopIteration):
        raise end
    if end is None:
        yield from rest


def _builtin_base(cls: type) -> str:
    return next(
        c.__name__
        for c in cls.__mro__
        if c.__module__ == "builtins" and c.__name__ in names.EXCEPTIONS
    )


def _large(value: Any) -> bool:
    """A container too large to copy into a module's namespace up front."""
    try:
        return (
            isinstance(value, list | tuple | dict | set | frozenset | bytes | str)
            and len(value) > 4096
        )
    except Exception:
        return True


def _wrapper_extra(peer: Peer, value: Any) -> dict[str, Any] | None:
    """An object `functools.update_wrapper` made a wrapper of: the names and `__wrapped__` it set."""
    try:
        own = object.__getattribute__(value, "__dict__")
    except AttributeError:
        return None
    if type(own) is not dict or "__wrapped__" not in own:
        return None
    out: dict[str, Any] = {k: own[k] for k in ("__name__", "__qualname__", "__module__")
                           if type(own.get(k)) is str}  # fmt: skip
    with contextlib.suppress(TypeError, ValueError, wire.WireError):
        out["__wrapped__"] = peer.encode(own["__wrapped__"])
    return out


def _extra(peer: Peer, value: Any) -> dict[str, Any] | None:
    """What a function's stand-in is made of: its names, docstring and signature."""
    if not isinstance(value, CALLABLE_ONLY):
        return _wrapper_extra(peer, value)
    extra = {
        k: getattr(value, k, None) for k in ("__name__", "__qualname__", "__module__", "__doc__")
    }
    out: dict[str, Any] = {k: v for k, v in extra.items() if type(v) is str}
    wrapped = getattr(value, "__wrapped__", None)
    if wrapped is not None:
        with contextlib.suppress(TypeError, ValueError, wire.WireError):
            out["__wrapped__"] = peer.encode(wrapped)
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return out
    params = []
    for p in signature.parameters.values():
        default = None if p.default is p.empty else peer.encode(p.default)
        params.append([p.name, int(p.kind), p.default is not p.empty, default])
    out["signature"] = params
    return out


def _encoded_args(peer: Peer, exc: BaseException) -> Any:
    try:
        return peer.encode(list(exc.args))
    except (TypeError, ValueError, wire.WireError):
        return [str(exc)]


def _global(name: Any) -> Any:
    if not isinstance(name, str) or ":" not in name:
        raise wire.WireError("a global is module:qualname")
    module, qual = name.split(":", 1)
    found: Any = importlib.import_module(module)
    for part in qual.split("."):
        found = getattr(found, part)
    return found
