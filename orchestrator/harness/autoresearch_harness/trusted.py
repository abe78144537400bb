"""The trusted side's half of a session: what it sends, what it takes, what it serves.

What crosses and what the candidate may do with it is decided in
`capabilities.py`; the candidate's objects become stand-ins (`standins.py`,
`classes.py`, `modules.py`); reading ahead of trusted iterators is `ahead.py`;
the shared random stream `seeding.py`.
"""

from __future__ import annotations

import builtins
import os
import sys
import types
import warnings
from typing import Any

from . import classes, forwarders, modules, names, standins, values, wire
from .ahead import Ahead
from .capabilities import (
    _SERVED,
    _SIMPLE,
    MUTATORS,
    Rules,
    _builtin_base,
    _encodable,
    _next,
    _not_our_output,
    _safe_global,
)
from .peer import Peer
from .seeding import RANDOM
from .shared import Plain
from .text import CandidateError, CandidateGone, CandidateText, candidate_error


class TrustedSide:
    """The trusted side's half of a `Peer` (see `peer.Side`)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.rules = Rules(self.root)
        self.classes: dict[int, type] = {}
        self._types: dict[type, int] = {}
        self.random = RANDOM
        self.ahead = Ahead()

    # -- what we send ------------------------------------------------------
    def refer(self, peer: Peer, value: Any) -> Any:
        ref = standins.reference(value)
        if ref is not None:
            if ref[0] is not peer:
                raise TypeError("a stand-in of another session cannot cross")
            back = forwarders.take_back(value)
            if back is not None:  # what was read ahead goes back with it, in front
                return {"$y": [ref[1], values.encode(back, lambda v: self.refer(peer, v))]}
            return {"$y": ref[1]}
        if isinstance(value, modules.RemoteModule):
            return {"$y": value.__dict__["_ar"][1]}
        if isinstance(value, BaseException):
            return self._exception(peer, value)
        name = self.rules.global_name(value)
        if name is not None:
            return {"$g": name}
        if isinstance(value, type) and issubclass(value, BaseException):  # `except` needs a class
            return {"$xc": [_builtin_base(value), peer.export(value, pin=True), value.__name__]}
        plain = self.rules.plain_value(value)
        if plain is not None:
            return values.encode(plain[0], lambda v: self.refer(peer, v))
        return {"$m": [peer.export(value), self._type(peer, type(value))]}

    def _type(self, peer: Peer, t: type) -> Any:
        key = self._types.get(t)
        if key is not None:
            return key
        key = self._types[t] = len(self._types) + 1
        mutable = self.rules.may_mutate(t)
        dunders = [d for d in names.special_methods(t)
                   if d in _SERVED or d == "__hash__=None" or (mutable and d in MUTATORS)]  # fmt: skip
        iter_self = hasattr(t, "__next__") and isinstance(
            getattr(t, "__iter__", None), types.WrapperDescriptorType
        )
        return {"k": key, "d": {"name": t.__name__, "dunders": dunders, "iter_self": iter_self}}

    def _exception(self, peer: Peer, exc: BaseException) -> Any:
        args = peer.encode(list(exc.args)) if _encodable(peer, exc.args) else []
        if type(exc).__module__ == "builtins" and type(exc).__name__ in names.EXCEPTIONS:
            return {"$x": [type(exc).__name__, args]}
        cls = peer.export(type(exc), pin=True)
        return {"$x": [_builtin_base(type(exc)), args, peer.export(exc), cls]}

    def resolve(self, peer: Peer, tag: str, body: Any) -> Any:
        if tag == "$y":
            if isinstance(body, list) and len(body) == 2:  # one of ours, with what was read ahead
                back = peer.decode(body[1], CandidateText)
                if not isinstance(back, dict) or not isinstance(back.get("values"), list):
                    raise wire.WireError("what comes back with an iterator is {values, end}")
                resumed = _resume(back["values"], peer.exported(body[0]), back.get("end"))
                peer.replace(body[0], resumed)
                return resumed
            return peer.exported(body)
        if tag == "$g":
            return _safe_global(body)
        if tag == "$x":
            return self._raised(peer, body)
        if tag == "$mod":
            return self._module(peer, body)
        return self._standin(peer, body)

    def preamble(self, peer: Peer) -> dict[str, Any] | None:
        return self.random.outgoing() or None

    def absorb(self, peer: Peer, frame: dict[str, Any]) -> None:
        """What comes with a message: the random stream, the candidate's classes this message
        refers to (in order, each after its bases), and the warnings its code issued."""
        self.random.incoming(frame)
        if "classes" in frame:
            self._classes(peer, frame["classes"])
        if "warnings" in frame:
            self._warnings(peer, frame["warnings"])

    def _warnings(self, peer: Peer, caught: Any) -> None:
        """Issued again here, so the trusted side's filters decide (pytest.warns sees them)."""
        for entry in caught if isinstance(caught, list) else []:
            category, message, filename, lineno = peer.decode(entry, CandidateText)
            if not (isinstance(category, type) and issubclass(category, Warning)):
                category = UserWarning
            warnings.warn_explicit(
                CandidateText(message),
                category,
                str(filename),
                lineno if type(lineno) is int else 0,
            )

    def _classes(self, peer: Peer, preamble: Any) -> None:
        if not isinstance(preamble, list):
            raise wire.WireError("a preamble is a list of classes")
        for entry in preamble:
            if not (isinstance(entry, list) and len(entry) == 3 and type(entry[0]) is int):
                raise wire.WireError("a class is [id, metaclass, description]")
            hid, meta_ref, desc = entry
            if hid in self.classes or not isinstance(desc, dict):
                continue
            self._make_class(peer, hid, desc, peer.decode(meta_ref, CandidateText))

    def _standin(self, peer: Peer, body: Any) -> Any:
        if not (isinstance(body, list) and len(body) == 3 and type(body[0]) is int):
            raise wire.WireError("a reference is [id, class, extra]")
        hid, cls_ref, extra = body
        cls = self._class_of(peer, cls_ref)
        if isinstance(cls, type) and issubclass(cls, type):  # the object is itself a class
            known = self.classes.get(hid)
            if known is None:
                raise wire.WireError("a class crossed without its description")
            return known
        if not (isinstance(cls, type) and issubclass(cls, standins.Instance)):
            raise wire.WireError("an object's class must be a stand-in")
        if cls.__dict__.get("_ar_function"):  # a real function here: inspect and pickle know it
            return peer.stand_in(
                hid, lambda: modules.make_function(peer, hid, self._extra(peer, extra))
            )
        extra = self._extra(peer, extra)
        return peer.stand_in(
            hid, lambda: self._bind(peer, hid, standins.make_instance(peer, cls, extra))
        )

    def _bind(self, peer: Peer, hid: int, obj: Any) -> Any:
        object.__getattribute__(obj, "__dict__")["_ar"] = (peer, hid)
        return obj

    def _extra(self, peer: Peer, extra: Any) -> Any:
        if isinstance(extra, dict):
            for key in ("args", "ahead", "signature", "__wrapped__"):
                if key in extra:
                    extra = {**extra, key: peer.decode(extra[key], CandidateText)}
        return extra

    def _class_of(self, peer: Peer, ref: Any) -> Any:
        """An object's class: the stand-in of a class sent before (its id), or a class value."""
        if type(ref) is int:
            known = self.classes.get(ref)
            if known is None:
                raise wire.WireError("an object of a class never described")
            return known
        return peer.decode(ref, CandidateText)

    def _make_class(self, peer: Peer, hid: int, desc: dict[str, Any], meta: Any) -> type:
        bases = peer.decode(desc.get("bases", []), CandidateText)
        if not isinstance(bases, list):
            raise wire.WireError("a class's bases must be a list")
        cls = classes.make_class(peer, hid, desc, bases, meta)
        self.classes[hid] = cls
        peer.stand_in(hid, lambda: cls, keep=True)
        return cls

    def _raised(self, peer: Peer, body: Any) -> BaseException:
        if not (isinstance(body, list) and len(body) in (2, 3, 4) and isinstance(body[0], str)):
            raise wire.WireError(
                "an exception is [kind, args, flags?] or [kind, args, id, class id]"
            )
        if len(body) == 3:
            exc = self._raised(peer, body[:2])
            exc.__suppress_context__ = bool(isinstance(body[2], dict) and body[2].get("suppress"))
            return exc
        kind, args = body[0], peer.decode(body[1], CandidateText)
        if len(body) == 4:  # of a class of ours: the very one, or a new one the candidate made
            mine = peer.exported(body[2]) if body[2] is not None else None
            if isinstance(mine, BaseException):
                return mine
            cls = peer.exported(body[3])
            if isinstance(cls, type) and issubclass(cls, BaseException) and isinstance(args, list):
                try:
                    return cls(*args)  # type: ignore[no-any-return]
                except Exception:
                    return cls()  # type: ignore[no-any-return]
        cls = getattr(builtins, kind, None) if kind in names.EXCEPTIONS else None
        if cls is SystemExit and isinstance(args, list):  # the candidate's exit ends its call
            return SystemExit(*args[:1])  # (pytest counts it a failure; it never interrupts a run)
        if isinstance(cls, type) and issubclass(cls, Exception) and isinstance(args, list):
            try:
                return cls(*args)  # type: ignore[no-any-return]
            except Exception:
                pass
        message = " ".join(str(a) for a in args) if isinstance(args, list) else ""
        return candidate_error(kind, message)

    def _module(self, peer: Peer, body: Any) -> Any:
        if not (isinstance(body, list) and len(body) == 2 and isinstance(body[0], str)):
            raise wire.WireError("a module is [name, id]")
        name, hid = body
        held = peer.held(hid) if type(hid) is int else None
        if held is not None:
            return held
        module = sys.modules.get(name)
        if (
            isinstance(module, modules.RemoteModule)
            and module.__dict__.get("_ar", (0, 0))[1] == hid
        ):
            return module
        if module is not None and not self.rules.trusted_module(module):
            return module  # the standard library's, or an installed package's: ours is the same
        return _ModuleHandle(peer, hid, name)

    # -- serving the candidate -----------------------------------------------
    def serve(self, peer: Peer, request: dict[str, Any]) -> Any:
        op = request.get("op")
        target = peer.exported(request.get("target"))
        args = peer.decode(request.get("args", []), CandidateText)
        if not isinstance(args, list):
            raise wire.WireError("args must be a list")
        if op == "call":
            _not_our_output(target)
            kwargs = peer.decode(request.get("kwargs", {"$d": []}), CandidateText)
            if not isinstance(kwargs, dict) or not all(
                type(k) is CandidateText or type(k) is str for k in kwargs
            ):
                raise wire.WireError("kwargs must map names to values")
            return target(*args, **{str.__str__(k): v for k, v in kwargs.items()})
        if op == "getattr":
            return self.rules.readable(target, request.get("name"))
        if op == "next":
            n = request.get("n")
            n = n if type(n) is int and 0 < n <= 1024 else 1
            hid = int(request.get("target") or 0)
            return Plain(_next(target, self.ahead.count(hid, target, peer.table(), n)))
        if op == "dunder":
            name = request.get("name")
            if name not in _SERVED and not (
                name in MUTATORS and self.rules.may_mutate(type(target))
            ):
                raise TypeError(f"the trusted side does not serve {name!r} to the candidate")
            if name == "__exit__":
                return bool(target.__exit__(*args)) if hasattr(target, "__exit__") else False
            return _SIMPLE.get(name, lambda t, a: getattr(type(t), name)(t, *a))(target, args)
        raise TypeError(f"the trusted side does not serve {op!r} to the candidate")

    def error(self, peer: Peer, exc: BaseException) -> dict[str, Any]:
        ref = standins.reference(exc)
        if ref is not None and ref[0] is peer:  # the candidate's own, raised through our code:
            return {"exc": self.refer(peer, exc)}  # it gets that very object back, its class kept
        if isinstance(exc, AssertionError) or not isinstance(exc, Exception | GeneratorExit):
            standins.swallowed(exc)  # the test's own verdict: it stands whatever the candidate does
        if not isinstance(exc, Exception):
            exc = RuntimeError(f"the trusted side raised {type(exc).__name__}")
        try:
            return {"exc": self._exception(peer, exc)}
        except Exception:
            return {
                "exc": {"$x": ["RuntimeError", [f"the trusted side raised {type(exc).__name__}"]]}
            }

    def failed(self, peer: Peer, error: Any) -> BaseException:
        try:
            exc = peer.decode(error.get("exc") if isinstance(error, dict) else None, CandidateText)
        except (wire.WireError, TypeError, ValueError, KeyError) as e:
            return CandidateGone("CandidateGone", f"the candidate sent a malformed error: {e}")
        if isinstance(exc, BaseException):
            return exc
        return CandidateError(
            "CandidateError", "the candidate raised something that is not an exception"
        )


class _ModuleHandle(standins.Instance):
    """A module of the candidate's that is not ours to import (read through the candidate)."""

    def __init__(self, peer: Peer, hid: int, name: str) -> None:
        object.__getattribute__(self, "__dict__").update(_ar=(peer, hid), __name__=name)

    def __repr__(self) -> str:
        return f"<the candidate's module {self.__dict__['__name__']!r}>"


def _resume(values: list[Any], rest: Any, end: Any) -> Any:
    """The values the candidate did not use yet, then the iterator itself (or its error)."""
    yield from values
    if isinstance(end, BaseException) and not isinstance(end, StopIteration):
        raise end
    if end is None:
        yield from rest
