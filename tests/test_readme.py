"""The README's promises checked against the code: every TOML block loads as a contract (a
fragment, merged onto a minimal one), and the sections the code points people to exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from orchestrator.contract.load import build_contract

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = [(README[: m.start()].count("\n") + 1, m.group(1))
          for m in re.finditer(r"```toml\n(.*?)```", README, re.S)]  # fmt: skip
BASE: dict[str, Any] = {
    "direction": "d.md",
    "implementation": {"paths": ["impl.py"]},
    "evaluator": {"command": "python bench.py"},
    "metric": {"name": "score", "goal": "min"},
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


@pytest.mark.parametrize(("line", "block"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_every_toml_block_of_the_readme_loads(line: int, block: str) -> None:
    data = tomllib.loads(block)  # blocks that show alternatives are split: each one parses
    build_contract(_merge(BASE, data), {}, f"README.md:{line}")


def test_the_sections_the_code_names_exist() -> None:
    headings = set(re.findall(r"^#+ (.+)$", README, re.M))
    assert "The contract" in headings
    for path in Path(__file__).resolve().parents[1].glob("orchestrator/**/*.py"):
        for name in re.findall(
            r"README(?:'s)? [\\\\]?[\"']([^\"'\\\\]+)[\\\\]?[\"']", path.read_text()
        ):
            assert name in headings, (
                f"{path} points to README section {name!r}, which does not exist"
            )


def test_every_cli_form_the_agent_tests_drive_is_the_readmes() -> None:
    """tests/test_agent_forms.py runs each form in the agent's container: they are the README's."""
    from tests.test_agent_forms import FORMS

    for name, command in FORMS.items():
        assert f"`{command}`" in README, (
            f"the README's Agents table lacks the {name} form {command!r}"
        )
