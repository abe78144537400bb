"""The `autoresearch` command: thin click wrappers over plain functions (STYLE.md #4).

Flags default to None; the ones the user set override the contract file, and a
contract can be given entirely as flags.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click

from orchestrator import __version__
from orchestrator.contract import DEFAULT_IMAGE, Contract, build_contract, read_contract_file
from orchestrator.contract import Executor as ExecutorConfig
from orchestrator.errors import ContractError, ImageMissing
from orchestrator.workspace import repo_root

_LIVE: Any = None
"""The live view while `run`/`resume` draws one: log lines go above it."""


def _say(msg: str) -> None:
    if _LIVE is not None and _LIVE.active:
        _LIVE.say(msg)
    else:
        click.echo(msg, err=True)


def _rel(root: Path, p: str) -> str:
    path = Path(p).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise ContractError(
            f"{p}: outside the repository {root} — experiments may only use files inside it"
        ) from None


def _sandbox() -> Any:
    from orchestrator.sandbox.docker import DockerSandbox

    return DockerSandbox()


def _local_sandbox(contract: Contract) -> Any:
    """This machine's checked sandbox; None when the experiments run on a Ray cluster's nodes."""
    if contract.executor.kind == "ray":
        return None
    sandbox = _sandbox()
    _check_image(sandbox, contract.sandbox.image)
    return sandbox


def _check_image(sandbox: Any, image: str) -> None:
    from docker.errors import ImageNotFound

    try:
        sandbox.client.images.get(image)
    except ImageNotFound:
        raise ImageMissing(
            f"sandbox image {image} is not built — run `autoresearch images build` (or `make images`)"
        ) from None


def _gpu_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a list of GPU indices — e.g. --gpus 0,2"
        ) from None


def _on_sigterm(_sig: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so `finally` blocks remove the container


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoresearch")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Repository to work in (default: the one holding the contract, else the current folder).")  # fmt: skip
@click.pass_context
def main(ctx: click.Context, repo: Path | None) -> None:
    """Run an agent's proposed changes in locked-down containers; keep what scores better."""
    ctx.obj = {"repo": repo}


def _root(ctx: click.Context, near: Path | None = None) -> Path:
    repo = ctx.obj["repo"]
    return repo_root(repo or (near.parent if near else Path.cwd()))


@main.command()
@click.argument("contract_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--edit", "edit", multiple=True, help="A file/glob the agent may change (repeatable)."
)
@click.option("--eval", "eval_cmd", help="The evaluator command, run in /workspace.")
@click.option(
    "--evaluator", multiple=True, help="An evaluator file, mounted read-only (repeatable)."
)
@click.option("--metric", help="Name of the primary metric the evaluator prints.")
@click.option("--goal", type=click.Choice(["min", "max"]), help="Lower or higher is better.")
@click.option("--min-improvement", type=float, help="Smallest change of the metric that counts.")
@click.option("--budget", type=float, help="Seconds per experiment (hard, SIGKILL).")
@click.option("--max-experiments", type=int, help="Stop after N experiments beyond the baseline.")
@click.option("--hours", type=float, help="Stop after H hours of experiments.")
@click.option("--image", help="Sandbox image (local; never pulled).")
@click.option("--cpus", type=float, help="CPU quota per experiment, in cores.")
@click.option("--memory", help="Memory limit per experiment, e.g. 2g.")
@click.option("--parallel", type=click.IntRange(min=1),
              help="Experiments at once (default: one per free GPU group, else cores / --cpus).")  # fmt: skip
@click.option("--pipeline", type=click.IntRange(min=0),
              help="Candidates the agent prepares ahead of a free slot (default 1; 0 = strictly in turn).")  # fmt: skip
@click.option("--gpus", "gpu_pin", callback=lambda _c, _p, v: _gpu_list(v),
              help="GPU indices experiments may lease, e.g. 0,2 (default: any free one).")  # fmt: skip
@click.option(
    "--gpus-per-experiment", type=click.IntRange(min=0), help="GPUs each experiment leases."
)
@click.option("--executor", type=click.Choice(["local", "ray"]),
              help="Run experiments on this machine's Docker engine (default) or a Ray cluster's nodes.")  # fmt: skip
@click.option(
    "--ray-address", help="Ray head HOST:PORT (default: RAY_ADDRESS, or the cluster on this host)."
)
@click.option(
    "--agent",
    type=click.Choice(["auto", "anthropic", "tuner", "command", "replay"]),
    help="Who proposes changes (auto: Claude when ANTHROPIC_API_KEY is set, else the tuner).",
)
@click.option("--model", help="Claude model for --agent anthropic/auto.")
@click.option(
    "--agent-command", help="Command line for --agent command; {prompt_file} is replaced."
)
@click.option(
    "--patches",
    type=click.Path(file_okay=False, path_type=Path),
    help="Replay agent: folder of patches.",
)
@click.option(
    "--tag", help="Run name; the branch is autoresearch/<tag> (default: today, e.g. nov28)."
)
@click.pass_context
def run(ctx: click.Context, /, contract_file: Path | None, tag: str | None, **flags: Any) -> None:
    """Start a run from CONTRACT_FILE, or from flags alone."""
    from orchestrator.runs import default_tag, start_run

    root = _root(ctx, contract_file.resolve() if contract_file else None)
    contract, source = load_contract(root, contract_file, flags)
    sandbox = _local_sandbox(contract)
    tag = tag or default_tag(root)
    the_run = start_run(root, tag, contract, source, sandbox, say=_say)
    _execute(the_run, tag)


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
    overrides: dict[str, Any] = {
        "implementation.paths": [_rel(root, p) for p in flags["edit"]] or None,
        "evaluator.command": flags["eval_cmd"],
        "evaluator.paths": [_rel(root, p) for p in flags["evaluator"]] or None,
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
        "gpus.pin": flags["gpu_pin"],
        "executor.kind": flags["executor"] or ("ray" if flags["ray_address"] else None),
        "executor.address": flags["ray_address"],
    }
    if flags["agent"] or flags["patches"] or flags["model"] or flags["agent_command"]:
        data["agent"] = agent_from_flags(dict(data.get("agent") or {}), flags)
    agent = data.get("agent")
    if isinstance(agent, dict) and isinstance(agent.get("patches"), str):
        p = Path(agent["patches"])
        agent["patches"] = str(p if p.is_absolute() else root / p)
    return build_contract(data, overrides, source), source


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
    elif kind == "tuner" and table.get("kind") == "auto" and isinstance(table.get("tuner"), dict):
        out = dict(table["tuner"])  # the auto table's tuner settings
    elif (
        kind == "anthropic"
        and table.get("kind") == "auto"
        and isinstance(table.get("anthropic"), dict)
    ):
        out = dict(table["anthropic"])
    else:
        out = {}
    out["kind"] = kind
    if flags["patches"]:
        out["patches"] = str(flags["patches"].resolve())
    if flags["agent_command"]:
        out["command"] = flags["agent_command"]
    if flags["model"]:
        if kind == "auto":
            out["anthropic"] = {**dict(out.get("anthropic") or {}), "model": flags["model"]}
        else:
            out["model"] = flags["model"]
    return out


def _execute(the_run: Any, tag: str) -> None:
    global _LIVE
    from orchestrator.live import LiveView

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with LiveView(the_run.ledger, the_run.contract) as _LIVE:
            the_run.execute()
    except KeyboardInterrupt:
        _say(f"interrupted — `autoresearch resume {tag}` continues where this stopped")
        sys.exit(130)
    finally:
        _LIVE = None
        signal.signal(signal.SIGTERM, previous)
    report = _write_report(the_run.ledger, the_run.ws, the_run.contract)
    _say(f"results: {the_run.run_dir / 'results.tsv'}; best commit on branch {the_run.ws.branch}"
         + (f"; report: {report}" if report else ""))  # fmt: skip


def _write_report(ledger: Any, ws: Any, contract: Contract) -> Path | None:
    """The morning report; a failure to draw it is said, never the end of a finished run."""
    from orchestrator.report_html import write_report

    try:
        return write_report(ledger, ws, contract)
    except Exception as e:
        _say(
            f"warning: could not write the report ({type(e).__name__}: {e}) — try `autoresearch report`"
        )
        return None


def _opened(ctx: click.Context, tag: str) -> tuple[Any, Contract, Any]:
    """(ledger, contract, workspace) of run TAG, without a Docker engine."""
    from orchestrator.runs import read_run

    return read_run(_root(ctx), tag)


@main.command()
@click.argument("tag")
@click.pass_context
def resume(ctx: click.Context, tag: str) -> None:
    """Continue run TAG after a crash or kill: nothing lost, nothing merged twice."""
    from orchestrator.runs import open_run

    _ledger, contract, _ws = _opened(ctx, tag)
    the_run = open_run(_root(ctx), tag, _local_sandbox(contract), say=_say)
    _execute(the_run, tag)


@main.command()
@click.argument("tag", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="The run's summary and every experiment, as JSON."
)
@click.pass_context
def status(ctx: click.Context, tag: str | None, as_json: bool) -> None:
    """Table of experiments of run TAG (or the list of runs)."""
    from orchestrator.report import status_table
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
    click.echo(status_table(info, ledger.experiments(), contract.metric.name, contract.metric.goal))


def _summary_json(ledger: Any, contract: Contract) -> str:
    from orchestrator.report import summary

    exps = ledger.experiments()
    data = summary(ledger.run(), exps, contract, {e.id: ledger.concurrent_with(e.id) for e in exps})
    return json.dumps(data, indent=2)


@main.command()
@click.argument("tag")
@click.option("--open", "open_it", is_flag=True, help="Open report.html in the browser afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the report's data as JSON instead.")
@click.pass_context
def report(ctx: click.Context, tag: str, open_it: bool, as_json: bool) -> None:
    """Write report.html and progress.png for run TAG (the morning read)."""
    from orchestrator.report_html import write_report

    ledger, contract, ws = _opened(ctx, tag)
    if as_json:
        click.echo(_summary_json(ledger, contract))
        return
    out = write_report(ledger, ws, contract)
    click.echo(str(out))
    if open_it:
        import webbrowser

        if not webbrowser.open(out.as_uri()):
            _say(f"no browser to open here — open {out} yourself")


@main.command()
@click.argument("tag")
@click.pass_context
def log(ctx: click.Context, tag: str) -> None:
    """The reasoning trail of run TAG: hypothesis, change and outcome of each experiment."""
    from orchestrator.report import reasoning_trail

    ledger, contract, _ws = _opened(ctx, tag)
    click.echo(reasoning_trail(ledger.experiments(), ledger.dir, contract.metric.name))


@main.command()
@click.argument("tag")
@click.pass_context
def accept(ctx: click.Context, tag: str) -> None:
    """Bring run TAG's result into your checked-out branch as one commit (after review)."""
    from orchestrator.accept import accept as do_accept

    ledger, contract, ws = _opened(ctx, tag)
    info = ledger.run()
    branch, commit = do_accept(ws, info, ledger.experiments(), contract.metric.name)
    click.echo(
        f"accepted run {tag} onto {branch} as {commit[:12]} (the run branch {ws.branch} keeps every step)"
    )


@main.command()
@click.argument("tag")
@click.argument("commit", required=False)
@click.pass_context
def verify(ctx: click.Context, tag: str, commit: str | None) -> None:
    """Re-run the merged commits of run TAG (or just COMMIT): do their metrics reproduce?"""
    from orchestrator.runs import open_run
    from orchestrator.verify import verify as do_verify

    _ledger, contract, _ws = _opened(ctx, tag)
    the_run = open_run(_root(ctx), tag, _local_sandbox(contract), say=_say, with_agent=False)
    checks = do_verify(the_run, commit)
    if not checks:
        click.echo(f"run {tag} has no merged experiments to verify")
        return
    for c in checks:
        now = "-" if c.now is None else f"{c.now:.6g}"
        verdict = "reproduces" if c.reproduces else f"DIFFERS {c.why}".rstrip()
        click.echo(
            f"{c.commit[:12]}  #{c.experiment}  recorded {c.recorded:.6g}  now {now}  band ±{c.band:.3g}  {verdict}"
        )
    if not all(c.reproduces for c in checks):
        raise SystemExit(1)


@main.command()
@click.option(
    "--all", "everything", is_flag=True, help="Also remove containers of runs still alive."
)
def cleanup(everything: bool) -> None:
    """Remove sandbox containers that a killed run left behind."""
    n = _sandbox().reap(everything=everything)
    click.echo(f"removed {n} container(s)")


@main.command()
@click.option(
    "--sandbox",
    "audit",
    is_flag=True,
    help="Audit the sandbox container against the CIS Docker Benchmark.",
)
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              help="ray: check every node of the Ray cluster instead of this machine.")  # fmt: skip
@click.option(
    "--ray-address", help="Ray head HOST:PORT (default: RAY_ADDRESS, or the cluster on this host)."
)
@click.argument("contract_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def doctor(audit: bool, executor: str, ray_address: str | None, contract_file: Path | None) -> None:
    """Say what is ready and what is missing, one line each.

    With --sandbox, create (never start) the container CONTRACT_FILE's runs would
    use, and print PASS/FAIL per CIS container-runtime item. With --executor ray,
    list the cluster's nodes: slots, GPUs, and whether each engine and image is ready.
    """
    from orchestrator.doctor import audit_sandbox, cluster_checks, run_checks

    contract = (
        build_contract(read_contract_file(contract_file), {}, str(contract_file))
        if contract_file is not None
        else None
    )
    if executor == "ray":
        cfg = contract.executor if contract is not None else None
        image = contract.sandbox.image if contract is not None else DEFAULT_IMAGE
        results = cluster_checks(ray_address or (cfg.address if cfg else None), image,
                                 cfg.node_sandbox if cfg else ExecutorConfig().node_sandbox)  # fmt: skip
        for c in results:
            click.echo(c.line())
        if not all(c.ok for c in results if c.required):
            raise SystemExit(1)
        return
    if audit:
        ok = audit_sandbox(click.echo, contract.sandbox if contract is not None else None)
    else:
        ok = run_checks(click.echo)
    if not ok:
        raise SystemExit(1)


@main.group()
def images() -> None:
    """Sandbox images."""


@images.command("build")
@click.argument("name", default="python")
@click.option("--base", type=click.Choice(["auto", "registry", "debootstrap"]), default="auto",
              help="Where the Debian base comes from (auto: registry if it answers, else debootstrap).")  # fmt: skip
def images_build(name: str, base: str) -> None:
    """Build the image NAME from sandbox-images/ (cached by a hash of its inputs)."""
    from orchestrator import images as img
    from orchestrator.sandbox.docker import connect

    img.build(connect(timeout=600), name, base=base, say=_say)
