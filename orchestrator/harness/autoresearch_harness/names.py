"""Names both sides agree on: which builtins and exceptions cross by name, which special
methods a stand-in forwards."""

from __future__ import annotations


def _builtin_exceptions() -> frozenset[str]:
    import builtins

    return frozenset(
        name
        for name, value in vars(builtins).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    )


EXCEPTIONS = _builtin_exceptions()
"""The builtin exception classes: they cross by name, their instances by name and args."""
SAFE_BUILTINS = EXCEPTIONS | frozenset(
    [
        "bool",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "object",
        "type",
        "range",
        "slice",
        "memoryview",
        "property",
        "staticmethod",
        "classmethod",
        "enumerate",
        "zip",
        "map",
        "filter",
        "reversed",
        "len",
        "abs",
        "min",
        "max",
        "sum",
        "sorted",
        "iter",
        "next",
        "all",
        "any",
        "divmod",
        "round",
        "pow",
        "ord",
        "chr",
        "bin",
        "hex",
        "oct",
        "callable",
        "isinstance",
        "issubclass",
        "hash",
        "repr",
        "ascii",
        "format",
    ]
)
"""Builtins the candidate may name (`$g`): the trusted side takes its own object of that name.
Never `print`, `open`, `eval`, `exec`, `getattr`... : those stay the candidate's own."""

_OPERATORS = [
    f"__{op}__"
    for op in (
        [
            "add",
            "sub",
            "mul",
            "matmul",
            "truediv",
            "floordiv",
            "mod",
            "divmod",
            "pow",
            "lshift",
            "rshift",
            "and",
            "xor",
            "or",
        ]
    )
]
SPECIAL = (
    "__call__", "__len__", "__iter__", "__next__", "__reversed__", "__contains__",
    "__getitem__", "__setitem__", "__delitem__", "__enter__", "__exit__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__",
    "__repr__", "__str__", "__bytes__", "__format__", "__int__", "__float__", "__complex__",
    "__index__", "__round__", "__trunc__", "__floor__", "__ceil__", "__neg__", "__pos__",
    "__abs__", "__invert__", "__length_hint__", "__fspath__",
    "__get__", "__set__", "__delete__", "__set_name__",
    *_OPERATORS,
    *(op.replace("__", "__r", 1) for op in _OPERATORS),
    *(op.replace("__", "__i", 1) for op in _OPERATORS if op != "__divmod__"),
)  # fmt: skip
"""The special methods a stand-in forwards, when the other side's class has them."""
OBJECT_DEFAULTS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__",
                   "__repr__", "__str__", "__format__")  # fmt: skip
"""Special methods every class has from `object`: forwarded only when the class overrides them."""


def special_methods(cls: type) -> list[str]:
    """The special methods of `cls` worth forwarding (see SPECIAL); `__hash__` None is kept."""
    out = []
    for name in SPECIAL:
        try:
            value = getattr(cls, name)
        except AttributeError:
            continue
        except Exception:  # a metaclass that raises on lookup: not a method we can forward
            continue
        if name in OBJECT_DEFAULTS and value is getattr(object, name, None):
            continue
        if cls is not type and issubclass(cls, type) and value is getattr(type, name, None):
            continue  # a metaclass's own, as every class has it: not forwarded
        if name == "__hash__" and value is None:
            out.append("__hash__=None")
            continue
        if value is None:
            continue
        out.append(name)
    return out
