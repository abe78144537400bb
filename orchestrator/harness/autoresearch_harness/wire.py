"""The wire between the trusted side and the candidate's worker: length-prefixed JSON frames.

Only plain data crosses: None, bools, ints, floats, complex, str, bytes, lists,
tuples, dicts, sets and numeric numpy arrays. Anything else the candidate has
stays with it and crosses as a handle (`{"$h": id}`). Nothing is ever unpickled
or evaluated: a frame decodes into exactly these types or is refused. Sizes and
nesting are capped, so an answer cannot exhaust the trusted side's memory.
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import struct
from collections.abc import Callable
from typing import Any

MAX_FRAME = 64 * 1024 * 1024
"""Largest frame either side accepts (bytes)."""
MAX_DEPTH = 64
"""Deepest nesting of containers in one value."""
_HEADER = struct.Struct(">I")
_DTYPE = re.compile(r"^[<>|=]?[biufcSU]\d{0,3}$")
"""numpy dtypes that are plain numbers or text: never objects, records or voids."""


class WireError(Exception):
    """A frame that breaks the format (too big, too deep, an unknown tag, bad JSON)."""


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_FRAME:
        raise WireError(f"a message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive(sock: socket.socket | Any) -> dict[str, Any] | None:
    """The next message, or None when the other side closed the connection.

    `sock` is a socket or a buffered reader over one (`sock.makefile("rb")`: one
    system call per frame instead of two).
    """
    header = _read(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    body = _read(sock, size)
    if body is None:
        return None
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise WireError(f"not a valid frame: {type(e).__name__}") from None
    if not isinstance(message, dict):
        raise WireError("a frame must hold an object")
    return message


def _read(sock: socket.socket | Any, n: int) -> bytes | None:
    read = sock.recv if isinstance(sock, socket.socket) else sock.read1
    chunks, got = [], 0
    while got < n:
        chunk = read(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# -- values -----------------------------------------------------------------
Handle = Callable[[Any], int]
"""Keeps an object that is not plain data on this side; returns its handle."""


def encode(value: Any, handle: Handle | None = None, depth: int = 0) -> Any:
    """`value` as JSON-able data; what is not plain data becomes a handle (or a TypeError)."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested deeper than {MAX_DEPTH} levels")
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return value if math.isfinite(value) else {"$f": repr(value)}
    if t is complex:
        return {"$c": [encode(value.real), encode(value.imag)]}
    if t is bytes or t is bytearray:
        return {"$b": base64.b64encode(value).decode()}
    d = depth + 1
    if t is list:
        return [encode(v, handle, d) for v in value]
    if t is tuple:
        return {"$t": [encode(v, handle, d) for v in value]}
    if t is dict:
        return {"$d": [[encode(k, handle, d), encode(v, handle, d)] for k, v in value.items()]}
    if t is set or t is frozenset:
        return {"$s" if t is set else "$z": [encode(v, handle, d) for v in value]}
    array = _array(value)
    if array is not None:
        return array
    if handle is None:
        raise TypeError(f"a {t.__name__} cannot be sent to the candidate: only plain data crosses")
    return {"$h": handle(value)}


def _array(value: Any) -> dict[str, Any] | None:
    """A numeric numpy array or scalar, by dtype, shape and bytes (never pickled)."""
    module = type(value).__module__
    if not module.startswith("numpy"):
        return None
    import numpy as np

    if isinstance(value, np.generic):
        value = np.asarray(value)
        scalar = True
    elif type(value) is np.ndarray:
        scalar = False
    else:
        return None
    dtype = value.dtype.str
    if not _DTYPE.match(dtype):
        return None  # objects, records: a handle
    data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
    return {"$a": [dtype, list(value.shape), data, scalar]}


Remote = Callable[[int], Any]
"""Makes the stand-in for a handle the other side keeps."""


def decode(data: Any, remote: Remote | None = None, text: type[str] = str, depth: int = 0) -> Any:
    """The value `data` encodes; handles become `remote(id)`, strings `text(...)`."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested deeper than {MAX_DEPTH} levels")
    if data is None or isinstance(data, bool | int | float):
        return data
    if isinstance(data, str):
        return data if text is str else text(data)
    d = depth + 1
    if isinstance(data, list):
        return [decode(v, remote, text, d) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise WireError("an object on the wire must be one tagged value")
    ((tag, body),) = data.items()
    return _TAGS.get(tag, _unknown)(body, remote, text, d)


def _unknown(body: Any, remote: Remote | None, text: type[str], depth: int) -> Any:
    raise WireError("an unknown tag on the wire")


def _items(body: Any, remote: Remote | None, text: type[str], depth: int) -> list[Any]:
    if not isinstance(body, list):
        raise WireError("a container must hold a list")
    return [decode(v, remote, text, depth) for v in body]


def _dict(body: Any, remote: Remote | None, text: type[str], depth: int) -> dict[Any, Any]:
    pairs = _items(body, remote, text, depth)
    if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise WireError("a dict must hold [key, value] pairs")
    try:
        return {k: v for k, v in pairs}
    except TypeError:
        raise WireError("a dict key that cannot be hashed") from None


def _handle(body: Any, remote: Remote | None, text: type[str], depth: int) -> Any:
    if remote is None or type(body) is not int:
        raise WireError("a handle where none may be")
    return remote(body)


def _float(body: Any, remote: Remote | None, text: type[str], depth: int) -> float:
    if body not in ("nan", "inf", "-inf"):
        raise WireError("a float tag must be nan, inf or -inf")
    return float(body)


def _bytes(body: Any, remote: Remote | None, text: type[str], depth: int) -> bytes:
    if not isinstance(body, str):
        raise WireError("bytes must be base64 text")
    return base64.b64decode(body, validate=True)


def _complex(body: Any, remote: Remote | None, text: type[str], depth: int) -> complex:
    re_, im = _items(body, remote, str, depth)
    if not isinstance(re_, float | int) or not isinstance(im, float | int):
        raise WireError("a complex number must hold two numbers")
    return complex(re_, im)


def _ndarray(body: Any, remote: Remote | None, text: type[str], depth: int) -> Any:
    if not (isinstance(body, list) and len(body) == 4):
        raise WireError("an array must be [dtype, shape, data, scalar]")
    dtype, shape, data, scalar = body
    if not (isinstance(dtype, str) and _DTYPE.match(dtype)):
        raise WireError("an array's dtype must be numeric or text")
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise WireError("an array's shape must be a list of sizes")
    import numpy as np

    raw = _bytes(data, remote, text, depth)
    array = np.frombuffer(raw, dtype=np.dtype(dtype))
    if array.size != math.prod(shape):
        raise WireError("an array's data does not match its shape")
    array = array.reshape(shape).copy()
    return array[()] if scalar is True else array


_TAGS: dict[str, Callable[[Any, Remote | None, type[str], int], Any]] = {
    "$t": lambda b, r, t, d: tuple(_items(b, r, t, d)),
    "$d": _dict,
    "$s": lambda b, r, t, d: set(_items(b, r, t, d)),
    "$z": lambda b, r, t, d: frozenset(_items(b, r, t, d)),
    "$b": _bytes,
    "$f": _float,
    "$c": _complex,
    "$a": _ndarray,
    "$h": _handle,
}
