"""Numeric numpy arrays and scalars on the wire: dtype, shape and bytes, never pickled."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from .wire import WireError

_DTYPE = re.compile(r"^[<>|=]?[biufcSU]\d{0,3}$")
"""numpy dtypes that are plain numbers or text: never objects, records or voids."""


def encoded(value: Any) -> dict[str, Any] | None:
    """A numeric numpy array or scalar as `{"$a": [dtype, shape, base64, scalar]}`, else None."""
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
        return None  # objects, records: a reference
    data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()
    return {"$a": [dtype, list(value.shape), data, scalar]}


def decoded(body: Any) -> Any:
    """The array (or scalar) an `$a` body describes, or a WireError."""
    if not (isinstance(body, list) and len(body) == 4):
        raise WireError("an array must be [dtype, shape, data, scalar]")
    dtype, shape, data, scalar = body
    if not (isinstance(dtype, str) and _DTYPE.match(dtype)):
        raise WireError("an array's dtype must be numeric or text")
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise WireError("an array's shape must be a list of sizes")
    if not isinstance(data, str):
        raise WireError("an array's data must be base64 text")
    import numpy as np

    array = np.frombuffer(base64.b64decode(data, validate=True), dtype=np.dtype(dtype))
    if array.size != math.prod(shape):
        raise WireError("an array's data does not match its shape")
    array = array.reshape(shape).copy()
    return array[()] if scalar is True else array
