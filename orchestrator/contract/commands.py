"""Which implementation file, if any, an evaluator command runs as a program.

In harness mode the trusted side holds the implementation's files as data: a command such as
`python train.py` or `timeout 60 python -m pkg.main` cannot run there, and the night would
crash at its baseline. The contract refuses such a command when it loads; this module reads
the command as the shell would split it into simple commands, well enough to name the file.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from orchestrator.contract.paths import matches_any

_SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", "{", "}"}
_WRAPPERS = {"exec", "env", "nice", "nohup", "time", "command", "stdbuf", "setsid"}
_INTERPRETER = re.compile(r"(python[0-9.]*|pypy[0-9.]*|sh|bash|dash|zsh)\Z")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


def implementation_run_by(command: str, implementation: list[str]) -> str | None:
    """The first implementation path `command` runs as a script or module, or None."""
    for simple in _simple_commands(command):
        for path in _programs(simple):
            if matches_any(path, implementation):
                return path
    return None


def _simple_commands(command: str) -> list[list[str]]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|(){}")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except (
        ValueError
    ):  # an unclosed quote: the shell refuses it at the baseline, with its own words
        return []
    out: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


def _programs(words: list[str]) -> list[str]:
    """Repo-relative paths a simple command executes: its program, an interpreter's script, or
    the files `python -m` would run."""
    words = _unwrapped(words)
    if not words:
        return []
    program = PurePosixPath(words[0]).name
    if not _INTERPRETER.match(program):
        return [_relative(words[0])] if "/" in words[0] or words[0].endswith(".py") else []
    python = program.startswith(("python", "pypy"))
    with_value = {"-W", "-X"} if python else {"-o", "-O"}
    rest = words[1:]
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag == "-m" and rest and python:
            module = rest[0].replace(".", "/")
            return [
                f"{module}.py",
                f"{module}/__main__.py",
                f"src/{module}.py",
                f"src/{module}/__main__.py",
            ]
        if flag == "-c" and rest and not python:  # sh -c "python train.py"
            return [p for simple in _simple_commands(rest[0]) for p in _programs(simple)]
        if flag in ("-c", "-m"):
            return []
        if flag in with_value:
            rest = rest[1:]
    return [_relative(rest[0])] if rest else []


def _unwrapped(words: list[str]) -> list[str]:
    """The command with leading assignments and wrappers (`timeout 60`, `env X=1`) taken off."""
    while words:
        head = PurePosixPath(words[0]).name
        if _ASSIGNMENT.match(words[0]):
            words = words[1:]
        elif head in _WRAPPERS:
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[1:]
        elif head == "timeout":
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[1:]
            words = words[1:]  # the duration
        else:
            return words
    return words


def _relative(path: str) -> str:
    """A path as the contract names it: relative to /workspace, without `./`."""
    p = PurePosixPath(path)
    if p.is_absolute():
        try:
            p = p.relative_to("/workspace")
        except ValueError:
            return str(p)
    return str(PurePosixPath(*[part for part in p.parts if part != "."]))
