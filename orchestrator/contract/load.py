"""Reading a contract: a TOML file, dotted-key overrides (the CLI's flags), one validated model.

Errors are one line that names the source, the key and the fix (STYLE.md #5).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.agents.config import AGENT_KINDS, PARAM_TYPES
from orchestrator.contract.model import Contract
from orchestrator.errors import ContractError
from orchestrator.executors.config import EXECUTOR_KINDS


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


_UNION_TAGS = {*AGENT_KINDS, *EXECUTOR_KINDS, *PARAM_TYPES}
"""Discriminated unions add their tag to an error's location; users never wrote it."""


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    # Discriminated unions add their tag to the location ("agent.replay.patches"); users wrote "agent.patches".
    loc = [str(p) for i, p in enumerate(first["loc"]) if not (i and str(p) in _UNION_TAGS)]
    where = ".".join(loc) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    fix = {
        "extra_forbidden": 'remove it (see the README\'s "The contract" for the keys)',
        "missing": "add it",
    }.get(first["type"], "correct the value")
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {where}: {msg} — {fix}{more}"


def build_contract(data: dict[str, Any], overrides: dict[str, Any], source: str) -> Contract:
    """Validate `data` with dotted-key `overrides` applied; errors name `source` and the key."""
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for dotted, value in overrides.items():
        if value is not None:
            _set_dotted(merged, dotted, value)
    try:
        return Contract.model_validate(merged)
    except ValidationError as e:
        raise ContractError(_format_error(source, e)) from None


def read_contract_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ContractError(f"{path}: no such contract file — check the path") from None
    except tomllib.TOMLDecodeError as e:
        raise ContractError(f"{path}: not valid TOML ({e}) — fix the syntax") from None


def check_against_repo(contract: Contract, root: Path, source: str) -> None:
    """Fail early, in one line, when the contract names files the repo does not have."""
    named = [("evaluator.paths", p) for p in contract.evaluator.paths]
    if contract.direction:
        named.append(("direction", contract.direction))
    for key, rel in named:
        if not (root / rel).exists():
            raise ContractError(
                f"{source}: {key}: {rel!r} does not exist under {root} — fix the path"
            )
    for mount in contract.evaluator.data:
        src = mount.source if mount.source.is_absolute() else root / mount.source
        if not src.exists():
            raise ContractError(
                f"{source}: evaluator.data: {str(mount.source)!r} does not exist — fix the path"
            )
