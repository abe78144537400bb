"""Constraints on secondary metrics: `p99_ms <= 400`, `tokens <= 1.1 * baseline`, `tests_failed == 0`.

Pure parsing and checking; a violation is a reason string naming the constraint.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RE = re.compile(
    rf"^\s*(?P<name>[A-Za-z_][\w.\-]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    rf"(?:(?P<factor>{_NUM})\s*\*\s*baseline|(?P<base>baseline)|(?P<value>{_NUM}))\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12),
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Constraint:
    text: str
    name: str
    op: str
    value: float
    """The bound, or the factor on the baseline's value when `relative`."""
    relative: bool

    def check(self, metrics: dict[str, float], baseline: dict[str, float]) -> str | None:
        """None when satisfied, else why not (naming the constraint)."""
        got = metrics.get(self.name)
        if got is None or math.isnan(got):
            return f"constraint `{self.text}` violated: no '{self.name}' metric in the output"
        bound = self.value
        if self.relative:
            base = baseline.get(self.name)
            if base is None:
                return f"constraint `{self.text}` cannot be checked: the baseline printed no '{self.name}'"
            bound = self.value * base
        if _OPS[self.op](got, bound):
            return None
        return f"constraint `{self.text}` violated: {self.name} = {got:.6g} (bound {bound:.6g})"


def parse_constraint(text: str) -> Constraint:
    m = _RE.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a constraint; write `name <= 400`, `name <= 1.1 * baseline` or `name == 0`"
        )
    factor, base = m.group("factor"), m.group("base")
    relative = factor is not None or base is not None
    value = float(factor) if factor is not None else 1.0 if base else float(m.group("value"))
    return Constraint(text.strip(), m.group("name"), m.group("op"), value, relative)
