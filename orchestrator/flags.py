"""A contract from the command line: flags over a contract file, or flags alone (STYLE.md #4).

`contract_flags` declares the flags of `run`; every one defaults to None, and the
ones the user set override the file's keys (`load_contract`). The `--agent`
flags rewrite the `[agent]` table; the others are dotted keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from orchestrator.agents.config import AGENT_KINDS, AGENT_MEMBERS
from orchestrator.contract.load import build_contract, read_contract_file
from orchestrator.contract.model import Contract
from orchestrator.errors import ContractError
from orchestrator.executors.config import EXECUTOR_KINDS

F = TypeVar("F", bound=Callable[..., Any])

RAY_ADDRESS_HELP = "Ray head HOST:PORT (default: RAY_ADDRESS, or the cluster on this host)."


def gpu_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a list of GPU indices — e.g. --gpus 0,2"
        ) from None


_FLAGS: list[Callable[[F], F]] = [
    click.option(
        "--edit", "edit", multiple=True, help="A file/glob the agent may change (repeatable)."
    ),
    click.option("--eval", "eval_cmd", help="The evaluator command, run in /workspace."),
    click.option(
        "--evaluator", multiple=True, help="An evaluator file, mounted read-only (repeatable)."
    ),
    click.option("--metric", help="Name of the primary metric the evaluator prints."),
    click.option("--goal", type=click.Choice(["min", "max"]), help="Lower or higher is better."),
    click.option(
        "--min-improvement", type=float, help="Smallest change of the metric that counts."
    ),
    click.option("--budget", type=float, help="Seconds per experiment (hard, SIGKILL)."),
    click.option(
        "--max-experiments", type=int, help="Stop after N experiments beyond the baseline."
    ),
    click.option("--hours", type=float, help="Stop after H hours of experiments."),
    click.option("--image", help="Sandbox image (local; never pulled)."),
    click.option("--cpus", type=float, help="CPU quota per experiment, in cores."),
    click.option("--memory", help="Memory limit per experiment, e.g. 2g."),
    click.option(
        "--parallel",
        type=click.IntRange(min=1),
        help="Experiments at once (default: one per free GPU group, else cores / --cpus).",
    ),
    click.option(
        "--pipeline",
        type=click.IntRange(min=0),
        help="Candidates the agent prepares ahead of a free slot (default 1; 0 = strictly in turn).",
    ),
    click.option(
        "--proposers",
        type=click.IntRange(min=1),
        help="Proposals prepared at once (default: as many as keep every slot fed).",
    ),
    click.option(
        "--gpus",
        "gpu_pin",
        callback=lambda _c, _p, v: gpu_list(v),
        help="GPU indices experiments may lease, e.g. 0,2 (default: any free one).",
    ),
    click.option(
        "--gpus-per-experiment", type=click.IntRange(min=0), help="GPUs each experiment leases."
    ),
    click.option(
        "--executor",
        type=click.Choice(EXECUTOR_KINDS),
        help="Where experiments run: this machine's Docker engine (local, the default) or a Ray cluster's nodes.",
    ),
    click.option("--ray-address", help=RAY_ADDRESS_HELP),
    click.option(
        "--agent",
        type=click.Choice(AGENT_KINDS),
        help="Who proposes changes (auto: Claude when ANTHROPIC_API_KEY is set, else the tuner).",
    ),
    click.option("--model", help="Claude model for --agent anthropic/auto."),
    click.option(
        "--agent-command", help="Command line for --agent command; {prompt_file} is replaced."
    ),
    click.option(
        "--patches",
        type=click.Path(file_okay=False, path_type=Path),
        help="Replay agent: folder of patches.",
    ),
]


def contract_flags(command: F) -> F:
    """The flags that build or override a contract, in the order `--help` shows them."""
    for option in reversed(_FLAGS):
        command = option(command)
    return command


def repo_relative(root: Path, p: str) -> str:
    path = Path(p).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise ContractError(
            f"{p}: outside the repository {root} — experiments may only use files inside it"
        ) from None


def load_contract(
    root: Path, contract_file: Path | None, flags: dict[str, Any]
) -> tuple[Contract, str]:
    """One validated contract from a file, flags overriding it, or flags alone."""
    data: dict[str, Any] = {}
    source = "command-line flags"
    if contract_file is not None:
        data = read_contract_file(contract_file)
        source = str(contract_file)
    elif not (
        flags.get("edit") and flags.get("eval_cmd") and flags.get("metric") and flags.get("goal")
    ):
        raise ContractError(
            "no contract — give a contract file, or at least --edit, --eval, --metric and --goal"
        )
    if flags["agent"] or flags["patches"] or flags["model"] or flags["agent_command"]:
        data["agent"] = agent_from_flags(dict(data.get("agent") or {}), flags)
    agent = data.get("agent")
    if isinstance(agent, dict) and isinstance(agent.get("patches"), str):
        p = Path(agent["patches"])
        agent["patches"] = str(p if p.is_absolute() else root / p)
    return build_contract(data, _overrides(root, flags), source), source


def _overrides(root: Path, flags: dict[str, Any]) -> dict[str, Any]:
    """The dotted contract keys the flags set (None: not given)."""
    return {
        "implementation.paths": [repo_relative(root, p) for p in flags["edit"]] or None,
        "evaluator.command": flags["eval_cmd"],
        "evaluator.paths": [repo_relative(root, p) for p in flags["evaluator"]] or None,
        "metric.name": flags["metric"],
        "metric.goal": flags["goal"],
        "metric.min_improvement": flags["min_improvement"],
        "budget.seconds": flags["budget"],
        "budget.max_experiments": flags["max_experiments"],
        "budget.max_hours": flags["hours"],
        "sandbox.image": flags["image"],
        "sandbox.cpus": flags["cpus"],
        "sandbox.memory": flags["memory"],
        "sandbox.gpus": flags["gpus_per_experiment"],
        "budget.parallel": flags["parallel"],
        "budget.pipeline": flags["pipeline"],
        "budget.proposers": flags["proposers"],
        "gpus.pin": flags["gpu_pin"],
        "executor.kind": flags["executor"] or ("ray" if flags["ray_address"] else None),
        "executor.address": flags["ray_address"],
    }


def agent_from_flags(table: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """The contract's [agent] table with the agent flags applied."""
    kind = flags["agent"] or (
        "replay"
        if flags["patches"]
        else "command"
        if flags["agent_command"]
        else table.get("kind", "auto")
    )
    if kind == table.get("kind"):
        out = dict(table)
    elif table.get("kind") == "auto" and isinstance(table.get(kind), dict):
        out = dict(table[kind])  # the auto table's settings for that member (tuner, anthropic)
    else:
        out = {}
    out["kind"] = kind
    if flags["patches"]:
        out["patches"] = str(flags["patches"].resolve())
    if flags["agent_command"]:
        out["command"] = flags["agent_command"]
    if flags["model"]:
        fields = AGENT_MEMBERS[kind].model_fields
        if "model" not in fields and "anthropic" in fields:  # auto: the Claude it may pick
            out["anthropic"] = {**dict(out.get("anthropic") or {}), "model": flags["model"]}
        else:
            out["model"] = flags["model"]
    return out
