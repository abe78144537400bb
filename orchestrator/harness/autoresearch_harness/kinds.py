"""Type checks on the trusted side that never ask a candidate's metaclass.

`t in (list, dict)` asks `==` of `t`'s metaclass and `{...}.get(t)` asks its hash: a
class whose metaclass is the candidate's (a test's subclass of a candidate class) would
answer as it likes. These compare by identity, or only classes of a standard metaclass.
"""

from __future__ import annotations

import abc


def one_of(t: type, kinds: tuple[type, ...]) -> bool:
    """`t` is one of `kinds`, by identity."""
    return any(t is k for k in kinds)


def standard_class(t: type) -> bool:
    """`t`'s metaclass is `type` or `abc.ABCMeta`: hashing and comparing it asks no one else."""
    m = type(t)
    return m is type or m is abc.ABCMeta
