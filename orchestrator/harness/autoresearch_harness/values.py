"""What a value is on the wire: plain data by value, everything else by reference.

Plain data crosses by value: None, bools, ints, floats, complex, str, bytes,
bytearray, lists, tuples, dicts, sets, ranges, slices, Ellipsis, numeric numpy
arrays, and value types of the standard library (Decimal, Fraction, the
datetime types, OrderedDict, Counter, deque, defaultdict of a plain factory,
argparse and types namespaces, generic aliases). Everything else stays with its
owner and crosses as a reference the receiving side resolves (`{"$m": ...}`
"mine", `{"$y": ...}` "yours", `{"$g": ...}` a global by name, `{"$x": ...}` an
exception, `{"$xc": ...}` an exception class, `{"$mod": ...}` a module): this
module only carries them, the two sides decide what each may name.

Nothing is ever unpickled or evaluated: data decodes into exactly these types or
is refused (`WireError`). Nesting is capped.
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import fractions
import math
import re
import types
from collections.abc import Callable
from typing import Any

from . import arrays, flat
from .kinds import one_of, standard_class
from .wire import WireError

MAX_DEPTH = 64
"""Deepest nesting of containers in one value."""
REFERENCES = ("$m", "$y", "$g", "$x", "$xc", "$mod", "$sh")
"""Tags a side resolves itself (see the module docstring)."""
SHAREABLE = (list, dict, set, bytearray)
"""Mutable containers a call's argument may be shared as (`shared.py`)."""


Refer = Callable[[Any], Any]
"""Encodes a value that is not plain data: a reference tag, or raises TypeError."""
Resolve = Callable[[str, Any], Any]
"""Decodes a reference tag (`REFERENCES`) into a value of this side."""
_TEXT_TYPES: tuple[type, ...] = (str,)


def text_types(*types: type) -> None:
    """str subclasses that cross as plain text (the trusted side's CandidateText)."""
    global _TEXT_TYPES
    _TEXT_TYPES = (str, *types)


class Encoded:
    """A value encoded already (by `encode`): crosses as it is."""

    __slots__ = ("data",)

    def __init__(self, data: Any) -> None:
        self.data = data


def encode(
    value: Any, refer: Refer | None = None, depth: int = 0, shared: Refer | None = None
) -> Any:
    """`value` as JSON-able data; what is not plain data goes to `refer` (or is a TypeError), and a
    list, dict, set or bytearray both sides share (`shared.py`) to `shared` first."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested deeper than {MAX_DEPTH} levels")
    t = type(value)
    if t is Encoded:
        return value.data
    if shared is not None and (t is list or t is dict or t is set or t is bytearray):
        tag = shared(value)
        if tag is not None:
            return tag
    if t is int and value.bit_length() > 12000:  # past what str() of an int may convert
        return {"$i": format(value, "x")}
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return value if math.isfinite(value) else {"$f": repr(value)}
    d = depth + 1
    if t is list or t is tuple:
        items = flat.encoded(value)
        if items is None:
            items = [encode(v, refer, d, shared) for v in value]
        return items if t is list else {"$t": items}
    if t is dict:
        return {
            "$d": [
                [encode(k, refer, d, shared), encode(v, refer, d, shared)] for k, v in value.items()
            ]
        }
    if one_of(t, _TEXT_TYPES):
        return str.__str__(value)
    if t is bytes:
        return {"$b": base64.b64encode(value).decode()}
    if t is set or t is frozenset:
        return {"$s" if t is set else "$z": [encode(v, refer, d, shared) for v in value]}
    return _encode_rarer(value, t, refer, d, shared)


def _encode_rarer(value: Any, t: type, refer: Refer | None, d: int, shared: Refer | None) -> Any:
    """`encode` for values tests pass less often; what is no plain data goes to `refer`."""
    if t is datetime.datetime or t is datetime.time:  # the zone apart: one of the candidate's, too
        naive = value.replace(tzinfo=None).isoformat()
        zone = value.tzinfo
        if zone is not None and type(zone) is not datetime.timezone:
            if refer is None:
                raise TypeError("only fixed-offset time zones cross as plain data")
            return {"$dt" if t is datetime.datetime else "$ti": [naive, refer(zone), value.fold]}
        return {"$dt" if t is datetime.datetime else "$ti": [naive, _zone(zone), value.fold]}
    codec = _VALUE_TYPES.get(t) if standard_class(t) else None  # no metaclass asked to hash
    if codec is not None:
        tag, parts = codec
        return {tag: encode(parts(value), refer, d, shared)}
    if t is complex:
        return {"$c": [encode(value.real), encode(value.imag)]}
    if value is Ellipsis:
        return {"$e": 0}
    if t is types.GenericAlias:
        args = [value.__origin__, list(value.__args__)]
        return {"$ga": [encode(part, refer, d, shared) for part in args]}
    if value is NotImplemented:
        return {"$ni": 0}
    if t is collections.defaultdict and _plain_factory(value.default_factory):
        factory = value.default_factory
        name = None if factory is None else factory.__name__
        return {"$dd": [name, encode(dict(value), refer, d, shared)]}
    if t.__name__ in ("Namespace", "SimpleNamespace") and t.__module__ in ("argparse", "types"):
        return {"$ns": [t.__module__, encode(dict(vars(value)), refer, d, shared)]}
    array = arrays.encoded(value)
    if array is not None:
        return array
    if refer is None:
        raise TypeError(f"a {t.__name__} cannot cross: only plain data crosses")
    return refer(value)


def _plain_factory(factory: Any) -> bool:
    return factory is None or factory in _FACTORIES.values()


_FACTORIES: dict[str, Any] = {"list": list, "dict": dict, "set": set, "int": int, "str": str,
                              "float": float, "tuple": tuple, "bytes": bytes}  # fmt: skip
_VALUE_TYPES: dict[type, tuple[str, Callable[[Any], Any]]] = {
    bytearray: ("$ba", bytes),
    range: ("$r", lambda r: [r.start, r.stop, r.step]),
    slice: ("$sl", lambda s: [s.start, s.stop, s.step]),
    decimal.Decimal: ("$dec", str),
    fractions.Fraction: ("$fr", lambda f: [f.numerator, f.denominator]),
    datetime.date: ("$da", lambda v: v.isoformat()),
    datetime.timedelta: ("$td", lambda v: [v.days, v.seconds, v.microseconds]),
    datetime.timezone: ("$tz", lambda v: _zone(v)),
    collections.OrderedDict: ("$od", lambda v: list(map(list, v.items()))),
    collections.Counter: ("$ct", lambda v: list(map(list, v.items()))),
    collections.deque: ("$dq", lambda v: [list(v), v.maxlen]),
}
"""Value types of the standard library that cross by value: tag, and the plain parts."""


def _zone(tz: Any) -> list[Any] | None:
    """A fixed-offset zone as [seconds, name]; other zones never cross by value."""
    if tz is None:
        return None
    if type(tz) is not datetime.timezone:
        raise TypeError("only fixed-offset time zones cross")
    offset = tz.utcoffset(None)
    return [offset.total_seconds(), tz.tzname(None)]


def decode(data: Any, resolve: Resolve | None = None, text: type[str] = str, depth: int = 0) -> Any:
    """The value `data` encodes; references go to `resolve`, strings become `text(...)`."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested deeper than {MAX_DEPTH} levels")
    if data is None or isinstance(data, bool | int | float):
        return data
    if isinstance(data, str):
        return data if text is str else text(data)
    d = depth + 1
    if isinstance(data, list):
        items = flat.decoded(data, text)
        return items if items is not None else [decode(v, resolve, text, d) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise WireError("an object on the wire must be one tagged value")
    ((tag, body),) = data.items()
    if tag in REFERENCES:
        if resolve is None:
            raise WireError("a reference where none may be")
        return resolve(tag, body)
    return _TAGS.get(tag, _unknown)(body, resolve, text, d)


def _unknown(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> Any:
    raise WireError("an unknown tag on the wire")


def _items(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> list[Any]:
    if not isinstance(body, list):
        raise WireError("a container must hold a list")
    items = flat.decoded(body, text)
    return items if items is not None else [decode(v, resolve, text, depth) for v in body]


def _pairs(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> list[Any]:
    pairs = _items(body, resolve, text, depth)
    if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise WireError("a mapping must hold [key, value] pairs")
    return pairs


def _dict(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> dict[Any, Any]:
    try:
        return {k: v for k, v in _pairs(body, resolve, text, depth)}
    except TypeError:
        raise WireError("a dict key that cannot be hashed") from None


def _float(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> float:
    if body not in ("nan", "inf", "-inf"):
        raise WireError("a float tag must be nan, inf or -inf")
    return float(body)


def _bytes(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> bytes:
    if not isinstance(body, str):
        raise WireError("bytes must be base64 text")
    return base64.b64decode(body, validate=True)


def _number(value: Any) -> int | float:
    if type(value) not in (int, float):
        raise WireError("a number was expected")
    return value  # type: ignore[no-any-return]


def _complex(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> complex:
    re_, im = _items(body, None, str, depth)
    return complex(_number(re_), _number(im))


def _three(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> list[Any]:
    parts = _items(body, resolve, text, depth)
    if len(parts) != 3:
        raise WireError("a range or slice holds three parts")
    return parts


def _range(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> range:
    start, stop, step = _items(body, None, str, depth)
    if not all(type(v) is int for v in (start, stop, step)):
        raise WireError("a range holds three ints")
    return range(start, stop, step)


def _alias(parts: list[Any]) -> tuple[Any, tuple[Any, ...]]:
    if len(parts) != 2 or not isinstance(parts[1], list):
        raise WireError("a generic alias is [origin, args]")
    return parts[0], tuple(parts[1])


def _namespace(parts: list[Any]) -> Any:
    """argparse.Namespace or types.SimpleNamespace: a record of attributes, by value."""
    if len(parts) != 2 or parts[0] not in ("argparse", "types") or not isinstance(parts[1], dict):
        raise WireError("a namespace is [module, attributes]")
    if not all(isinstance(k, str) and k.isidentifier() for k in parts[1]):
        raise WireError("a namespace's attributes are names")
    if parts[0] == "argparse":
        import argparse

        return argparse.Namespace(**parts[1])
    return types.SimpleNamespace(**parts[1])


def _hex(body: Any) -> str:
    if not isinstance(body, str) or not re.fullmatch(r"-?[0-9a-f]+", body):
        raise WireError("a large int is hex text")
    return body


def _text(body: Any) -> str:
    if not isinstance(body, str) or len(body) > 200:
        raise WireError("a short text was expected")
    return body


def _tz(body: Any) -> datetime.timezone | None:
    if body is None:
        return None
    if not (isinstance(body, list) and len(body) == 2):
        raise WireError("a time zone is [seconds, name]")
    seconds, name = body
    offset = datetime.timedelta(seconds=_number(seconds))
    return datetime.timezone(offset, _text(name)) if name is not None else datetime.timezone(offset)


def _when(kind: Any) -> Callable[[Any, Resolve | None, type[str], int], Any]:
    def parse(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> Any:
        if not (isinstance(body, list) and len(body) == 3 and body[2] in (0, 1)):
            raise WireError("a datetime is [iso, zone, fold]")
        value = kind.fromisoformat(_text(body[0]))
        if isinstance(body[1], dict):  # a zone of the other side's, by reference
            zone = decode(body[1], resolve, text, depth + 1)
            if not isinstance(zone, datetime.tzinfo):
                raise WireError("a datetime's zone must be a tzinfo")
            return value.replace(tzinfo=zone, fold=body[2])
        return value.replace(tzinfo=_tz(body[1]), fold=body[2])

    return parse


def _deque(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> Any:
    items, maxlen = _items(body, resolve, text, depth) if isinstance(body, list) else (None, None)
    if not isinstance(items, list) or not (maxlen is None or type(maxlen) is int):
        raise WireError("a deque is [items, maxlen]")
    return collections.deque(items, maxlen)


def _defaultdict(body: Any, resolve: Resolve | None, text: type[str], depth: int) -> Any:
    if not (isinstance(body, list) and len(body) == 2):
        raise WireError("a defaultdict is [factory, items]")
    name, items = body
    if name is not None and name not in _FACTORIES:
        raise WireError("a defaultdict's factory must be a plain type")
    out: collections.defaultdict[Any, Any] = collections.defaultdict(
        None if name is None else _FACTORIES[name]
    )
    out.update(_dict(items["$d"] if isinstance(items, dict) else None, resolve, text, depth))
    return out


_TAGS: dict[str, Callable[[Any, Resolve | None, type[str], int], Any]] = {
    "$t": lambda b, r, t, d: tuple(_items(b, r, t, d)),
    "$d": _dict,
    "$s": lambda b, r, t, d: set(_items(b, r, t, d)),
    "$z": lambda b, r, t, d: frozenset(_items(b, r, t, d)),
    "$b": _bytes,
    "$ba": lambda b, r, t, d: bytearray(_bytes(b["$b"] if isinstance(b, dict) else b, r, t, d)),
    "$f": _float,
    "$c": _complex,
    "$a": lambda b, r, t, d: arrays.decoded(b),
    "$e": lambda b, r, t, d: Ellipsis,
    "$ns": lambda b, r, t, d: _namespace(_items(b, r, t, d)),
    "$i": lambda b, r, t, d: int(_hex(b), 16),
    "$ga": lambda b, r, t, d: types.GenericAlias(*_alias(_items(b, r, t, d))),
    "$ni": lambda b, r, t, d: NotImplemented,
    "$r": _range,
    "$sl": lambda b, r, t, d: slice(*_three(b, r, t, d)),
    "$dec": lambda b, r, t, d: decimal.Decimal(_text(b)),
    "$fr": lambda b, r, t, d: fractions.Fraction(*(_number(v) for v in _items(b, None, str, d))),
    "$dt": _when(datetime.datetime),
    "$ti": _when(datetime.time),
    "$da": lambda b, r, t, d: datetime.date.fromisoformat(_text(b)),
    "$td": lambda b, r, t, d: datetime.timedelta(*(_number(v) for v in _items(b, None, str, d))),
    "$tz": lambda b, r, t, d: _tz(_items(b, None, str, d) if isinstance(b, list) else b),
    "$od": lambda b, r, t, d: collections.OrderedDict(_pairs(b, r, t, d)),
    "$ct": lambda b, r, t, d: collections.Counter(dict(_pairs(b, r, t, d))),
    "$dq": _deque,
    "$dd": _defaultdict,
}
