"""The one pydantic base every configuration section derives from (STYLE.md #3), and
what sections share: byte sizes, and code named by string.

Unknown keys are errors, never silence; a validated section is frozen. A section
names the code that builds its backend as `module:name` (`resolve`), so a config
module never imports the implementations that read it.
"""

from __future__ import annotations

import importlib
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: object) -> object:
    """'2g', '512m', '1.5GiB' or a plain byte count → bytes (int)."""
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a size; write e.g. '512m' or '2g'")
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    return value


Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
"""Bytes, or a size with a unit ('512m', '2g')."""


def resolve(where: str) -> Any:
    """What `where` ('package.module:name') names, its module imported only now.

    Raises ImportError when the module (or what it imports) is not installed."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)
