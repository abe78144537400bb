"""The `autoresearch` command: thin click wrappers over plain functions (STYLE.md #4).

The contract comes from `flags.py` (a file, flags over it, or flags alone); a
night runs under `terminal.py` (live view, signals); everything else is a plain
function in its own module, callable without click.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError

from orchestrator import __version__, sanitize
from orchestrator.contract.load import build_contract, read_contract_file
from orchestrator.contract.model import DEFAULT_IMAGE, Contract
from orchestrator.errors import ContractError, UserError
from orchestrator.executors.config import EXECUTOR_KINDS, ExecutorConfig
from orchestrator.flags import RAY_ADDRESS_HELP, contract_flags, load_contract
from orchestrator.init import KINDS
from orchestrator.terminal import Terminal
from orchestrator.workspace import repo_root

_terminal = Terminal()
say = _terminal.say


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoresearch")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Repository to work in (default: the one holding the contract, else the current folder).",
)
@click.pass_context
def main(ctx: click.Context, repo: Path | None) -> None:
    """Run an agent's proposed changes in locked-down containers; keep what scores better."""
    ctx.obj = {"repo": repo}


def _root(ctx: click.Context, near: Path | None = None) -> Path:
    repo = ctx.obj["repo"]
    return repo_root(repo or (near.parent if near else Path.cwd()))


def _opened(ctx: click.Context, tag: str) -> tuple[Any, Contract, Any]:
    """(ledger, contract, workspace) of run TAG, without a Docker engine."""
    from orchestrator.runs import read_run

    return read_run(_root(ctx), tag)


@main.command()
@click.argument("contract_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@contract_flags
@click.option(
    "--tag", help="Run name; the branch is autoresearch/<tag> (default: today, e.g. nov28)."
)
@click.pass_context
def run(ctx: click.Context, /, contract_file: Path | None, tag: str | None, **flags: Any) -> None:
    """Start a run from CONTRACT_FILE, or from flags alone."""
    from orchestrator.runs import default_tag, start_run

    root = _root(ctx, contract_file.resolve() if contract_file else None)
    contract, source = load_contract(root, contract_file, flags)
    tag = tag or default_tag(root)
    _terminal.night(lambda: start_run(root, tag, contract, source, None, say=say), tag)


@main.command()
@click.argument("tag")
@click.pass_context
def resume(ctx: click.Context, tag: str) -> None:
    """Continue run TAG after a crash or kill (nothing lost, nothing merged twice), or start
    proposals again in a night a person paused."""
    from orchestrator.runs import is_live, open_run

    root = _root(ctx)
    ledger, _contract, _ws = _opened(ctx, tag)
    if ledger.paused():
        ledger.pause(False)
        if is_live(ledger.dir):
            click.echo(f"run {tag}: proposals start again")
            return
    _terminal.night(lambda: open_run(root, tag, None, say=say), tag)


@main.command()
@click.argument("tag")
@click.pass_context
def pause(ctx: click.Context, tag: str) -> None:
    """Start no new proposal in run TAG (what is in flight finishes) until `resume TAG`."""
    ledger, _contract, _ws = _opened(ctx, tag)
    ledger.pause(True)
    click.echo(
        f"run {tag}: no new proposals; what is in flight finishes — `autoresearch resume {tag}` goes on"
    )


@main.command()
@click.argument("tag", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="The run's summary and every experiment, as JSON."
)
@click.pass_context
def status(ctx: click.Context, tag: str | None, as_json: bool) -> None:
    """Table of experiments of run TAG (or the list of runs)."""
    from orchestrator.morning.summary import status_table
    from orchestrator.runs import list_runs

    if tag is None:
        runs = list_runs(_root(ctx))
        click.echo(
            json.dumps(runs) if as_json else "\n".join(runs) if runs else f"no runs in {_root(ctx)}"
        )
        return
    ledger, contract, _ws = _opened(ctx, tag)
    info = ledger.run()
    if as_json:
        click.echo(_summary_json(ledger, contract))
        return
    click.echo(sanitize.terminal(status_table(info, ledger.experiments(), contract)))


def _summary_json(ledger: Any, contract: Contract) -> str:
    from orchestrator.morning.summary import overlaps, summary

    exps = ledger.experiments()
    data = summary(ledger.run(), exps, contract, overlaps(exps))
    return json.dumps(data, indent=2)


@main.command()
@click.argument("tag")
@click.option("--open", "open_it", is_flag=True, help="Open report.html in the browser afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's data as JSON instead.")
@click.option(
    "--serve",
    "serve_it",
    is_flag=True,
    help="Serve the report on 127.0.0.1 (read-only), rewritten as the night goes; Ctrl-C stops.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
    help="The port --serve listens on (0: any free one).",
)  # fmt: skip
@click.pass_context
def report(
    ctx: click.Context, tag: str, open_it: bool, as_json: bool, serve_it: bool, port: int
) -> None:
    """Write report.html and progress.png for run TAG (the morning read), or serve it live."""
    from orchestrator.morning.report import write_report

    ledger, contract, ws = _opened(ctx, tag)
    if as_json:
        click.echo(_summary_json(ledger, contract))
        return
    if serve_it:
        from orchestrator.morning.serve import serve

        serve(ledger, ws, contract, port, say=click.echo)
        return
    out = write_report(ledger, ws, contract)
    click.echo(str(out))
    if open_it:
        import webbrowser

        if not webbrowser.open(out.as_uri()):
            say(f"no browser to open here — open {out} yourself")


@main.command()
@click.argument("tag")
@click.pass_context
def log(ctx: click.Context, tag: str) -> None:
    """The reasoning trail of run TAG: hypothesis, change and outcome of each experiment."""
    from orchestrator.morning.summary import reasoning_trail, steered

    ledger, contract, _ws = _opened(ctx, tag)
    trail = reasoning_trail(ledger.experiments(), ledger.dir, contract.metric.name)
    notes = [f"steered at {when}: {text}" for when, text in steered(ledger.steering())]
    click.echo(sanitize.terminal("\n".join([trail, *notes])))


@main.command()
@click.argument("tag")
@click.argument("text")
@click.pass_context
def steer(ctx: click.Context, tag: str, text: str) -> None:
    """Tell every later proposal of run TAG something (a new idea, a constraint, "stop trying
    X"), while it runs or before `resume`; kept in its ledger and shown by `log`."""
    from orchestrator.agents.context import STEER_CHARS

    note = sanitize.line(text)
    if not note or len(note) > STEER_CHARS:
        raise UserError(f"a steering note is 1 to {STEER_CHARS} characters (this one: {len(note)})")
    ledger, _contract, _ws = _opened(ctx, tag)
    ledger.steer(note)
    click.echo(f"run {tag}: every proposal started from now on reads this note")


@main.command()
@click.argument("tag")
@click.argument("experiment", required=False, type=int)
@click.pass_context
def accept(ctx: click.Context, tag: str, experiment: int | None) -> None:
    """Bring run TAG's result (or EXPERIMENT, a winner held for review) into your checked-out
    branch as one commit."""
    from orchestrator.morning.accept import accept as do_accept

    ledger, contract, ws = _opened(ctx, tag)
    info = ledger.run()
    branch, commit = do_accept(ws, info, ledger.experiments(), contract.metric.name, experiment)
    click.echo(
        f"accepted run {tag} onto {branch} as {commit[:12]} (the run branch {ws.branch} keeps every step)"
    )


@main.command()
@click.argument("tag")
@click.argument("commit", required=False)
@click.pass_context
def verify(ctx: click.Context, tag: str, commit: str | None) -> None:
    """Re-run the merged commits of run TAG (or just COMMIT): do their metrics reproduce?"""
    from orchestrator.morning.verify import verify as do_verify
    from orchestrator.morning.verify import verify_line
    from orchestrator.runs import open_measuring

    checks = do_verify(open_measuring(_root(ctx), tag, None, say=say), commit)
    if not checks:
        click.echo(f"run {tag} has no merged experiments to verify")
        return
    for c in checks:
        click.echo(verify_line(c))
    if not all(c.reproduces for c in checks):
        raise SystemExit(1)


@main.command()
@click.option(
    "--all", "everything", is_flag=True, help="Also remove containers of runs still alive."
)
@click.pass_context
def cleanup(ctx: click.Context, everything: bool) -> None:
    """Remove what killed runs left behind: sandbox containers, and (in this repository)
    their mounted work folders."""
    from orchestrator.errors import WorkspaceError
    from orchestrator.executors.workdirs import sweep
    from orchestrator.links import within
    from orchestrator.runs import RUNS_DIR
    from orchestrator.sandbox.docker import DockerSandbox

    n = DockerSandbox().reap(everything=everything)
    try:
        root = _root(ctx)
        runs = within(root, root / RUNS_DIR, "the runs folder")  # never swept through a link out
    except WorkspaceError:
        runs = None  # not in a repository: containers only
    folders = sum(sweep(box, lambda _name: False) for box in runs.glob("*/sandbox")) if runs else 0
    click.echo(f"removed {n} container(s) and {folders} work folder(s)")


@main.command()
@click.option(
    "--sandbox",
    "audit",
    is_flag=True,
    help="Audit the sandbox container against the CIS Docker Benchmark.",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTOR_KINDS),
    default=None,
    help="Check where this executor runs experiments (default: the contract's, else local).",
)
@click.option("--ray-address", help=RAY_ADDRESS_HELP)
@click.argument("contract_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def doctor(
    audit: bool, executor: str | None, ray_address: str | None, contract_file: Path | None
) -> None:
    """Say what is ready and what is missing, one line each.

    With --sandbox, create (never start) the container CONTRACT_FILE's runs would
    use, and print PASS/FAIL per CIS container-runtime item. With --executor ray,
    list the cluster's nodes: slots, GPUs, and whether each engine and image is ready.
    """
    from orchestrator.doctor import (
        audit_sandbox,
        gateway_checks,
        isolation_check,
        module_checks,
        project_image_check,
    )

    contract = (
        build_contract(read_contract_file(contract_file), {}, str(contract_file))
        if contract_file is not None
        else None
    )
    if audit:
        if not audit_sandbox(click.echo, contract.sandbox if contract is not None else None):
            raise SystemExit(1)
        return
    table = contract.executor.model_dump() if contract is not None else {"kind": "local"}
    if executor is not None and executor != table["kind"]:
        table = {"kind": executor}
    if ray_address is not None:
        table["address"] = ray_address
    try:
        cfg: Any = TypeAdapter(ExecutorConfig).validate_python(table)
    except ValidationError as e:
        raise ContractError(f"--executor: {e.errors()[0]['msg']} — check the flags") from None
    checks = cfg.load(cfg.checker)
    results = checks(cfg, contract.sandbox.image if contract is not None else DEFAULT_IMAGE)
    if contract is not None and contract_file is not None:
        results.append(isolation_check(contract))
        results += gateway_checks(contract)
        root = repo_root(contract_file.resolve().parent)
        image = project_image_check(contract, root)
        results += [image] if image else []
        results += module_checks(contract, root)
    for c in results:
        click.echo(c.line())
    if not all(c.ok for c in results if c.required):
        raise SystemExit(1)


@main.command()
@click.option("--edit", help="The file the agent may change (repo-relative).")
@click.option(
    "--eval", "eval_cmd", help="The command that measures it (default: the skeleton written)."
)
@click.option("--metric", help="The metric's name, as the evaluator prints it.")
@click.option("--goal", type=click.Choice(["min", "max"]), help="Lower or higher is better.")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default=None,
    help="What kind of task (seeds the direction).",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.pass_context
def init(ctx: click.Context, edit: str | None, eval_cmd: str | None, metric: str | None,
         goal: str | None, kind: str | None, force: bool) -> None:  # fmt: skip
    """Write a first contract, a direction and an evaluator skeleton for this repository."""
    from orchestrator.init import Plan, write

    root = _root(ctx)
    plan = Plan(
        edit=edit or _ask("The file to improve (repo-relative)", "--edit"),
        metric=metric or _ask("The metric's name", "--metric", "latency_ms"),
        goal=goal or _ask("Lower or higher is better (min/max)", "--goal", "min"),
        kind=kind or _ask(f"The kind of task ({', '.join(KINDS)})", "--kind", "latency"),
        command=eval_cmd,
    )
    for path in write(root, plan, force=force):
        click.echo(f"wrote {path.relative_to(root)}")
    click.echo("next: edit autoresearch/evaluate.py, then `autoresearch doctor autoresearch.toml` "
               "and `autoresearch run autoresearch.toml`")  # fmt: skip


def _ask(question: str, flag: str, default: str | None = None) -> str:
    """Ask on a terminal; elsewhere the flag is required (one line naming it)."""
    if not sys.stdin.isatty():
        if default is not None:
            return default
        raise ContractError(
            f"{flag} is required when no terminal can be asked — e.g. {flag} src/app.py"
        )
    return str(click.prompt(question, default=default))


@main.group()
def images() -> None:
    """Sandbox images."""


@images.command("build")
@click.argument("name", default="python")
@click.option(
    "--base",
    type=click.Choice(["auto", "registry", "debootstrap"]),
    default="auto",
    help="Where the Debian base comes from (auto: registry if it answers, else debootstrap).",
)
def images_build(name: str, base: str) -> None:
    """Build the image NAME from sandbox-images/ (cached by a hash of its inputs)."""
    from orchestrator.sandbox import images as img
    from orchestrator.sandbox.engine import connect

    img.build(connect(timeout=600), name, base=base, say=say)
