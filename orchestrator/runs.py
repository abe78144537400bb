"""Starting and reopening runs: the run folder, its snapshots, and the parts of its Night.

A run lives in `<repo>/.autoresearch/<tag>/`: the ledger, results.tsv, a frozen
copy of the contract (in the ledger), of the evaluator files and of the
direction. `resume` rebuilds the same Night from that folder alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

from pydantic import ValidationError

from orchestrator.agents import Agent
from orchestrator.contract.load import check_against_repo
from orchestrator.contract.model import FORGEABLE, Contract
from orchestrator.errors import ContractError, InfraError, RunNotFound, UserError
from orchestrator.executors import Executor, RunFolder
from orchestrator.executors.isolation import stdlib_named
from orchestrator.folders import remove_tree
from orchestrator.gpus import GpuInventory
from orchestrator.ledger import Ledger
from orchestrator.links import within
from orchestrator.night import Backoff, Say
from orchestrator.night.driver import Night
from orchestrator.night.measuring import Measuring, measuring
from orchestrator.sandbox import SandboxBackend
from orchestrator.sandbox.seccomp import default_profile
from orchestrator.schema import resolve
from orchestrator.workspace import Workspace

RUNS_DIR = ".autoresearch"


def evaluator_hash(run_dir: Path) -> str:
    """A hash of the trusted files a run scores with: the evaluator and the scorer snapshots."""
    h = hashlib.sha256()
    for sub in ("evaluator", "scorer"):
        root = run_dir / sub
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(f"{sub}/{f.relative_to(root).as_posix()}".encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def run_dir(root: Path, tag: str) -> Path:
    return within(root, root / RUNS_DIR / tag, "the run folder")  # never through a link out


def default_tag(root: Path, today: dt.date | None = None) -> str:
    base = (today or dt.date.today()).strftime("%b%d").lower()
    tag, n = base, 1
    while run_dir(root, tag).exists():
        n += 1
        tag = f"{base}-{n}"
    return tag


def build_agent(contract: Contract, run_dir: Path, say: Say = print) -> Agent:
    """The contract's agent, made by the `builder` its `[agent]` member names (for `auto`, the
    member it picks on this machine)."""
    member = contract.agent.pick()
    agent: Agent = resolve(member.builder)(member, contract, run_dir, say)
    return agent


class _Leftovers:
    """Tells the run's ledger of a work folder that could not be removed (once it has one)."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger

    def __call__(self, folder: Path, e: OSError) -> None:
        if self.ledger is not None:
            self.ledger.event("leftover", f"{folder}: {e}")


def build_executor(
    contract: Contract, root: Path, tag: str, sandbox: SandboxBackend | None, leftovers: _Leftovers
) -> Executor:
    """The contract's executor over `sandbox` (None: the executor's own default), made by the
    `builder` its `[executor]` member names.

    Raises UserError when what the executor needs is not installed (Ray)."""
    member = contract.executor
    member.reachable()
    folder = RunFolder(tag, run_dir(root, tag), root)
    executor: Executor = member.load(member.builder)(member, folder, leftovers, sandbox)
    return executor


def _copy_readonly(root: Path, paths: list[str], dest: Path) -> None:
    """Copy trusted files as they are now, read-only and readable by the sandbox's user."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in paths:
        src, out = root / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, symlinks=False)
        else:
            shutil.copy2(src, out)
    for dirpath, _dirs, files in os.walk(dest):
        for name in files:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(dirpath, 0o755)


def _snapshot(root: Path, contract: Contract, dest: Path) -> None:
    """Copy the evaluator, scorer and direction as they are now; the run uses only these copies."""
    _copy_readonly(root, contract.evaluator.paths, dest / "evaluator")
    if contract.score is not None:
        _copy_readonly(root, contract.score.paths, dest / "scorer")
    if contract.direction:
        shutil.copy2(root / contract.direction, dest / "direction.md")
    if contract.sandbox.seccomp is not None:
        src = (
            contract.sandbox.seccomp
            if contract.sandbox.seccomp.is_absolute()
            else root / contract.sandbox.seccomp
        )
        try:
            json.loads(src.read_text())
        except (OSError, ValueError) as e:
            raise ContractError(
                f"sandbox.seccomp: {src} is not a readable JSON profile ({e}) — fix the path or the file"
            ) from None
        shutil.copy2(src, dest / "seccomp.json")
    elif (
        profile := default_profile()
    ) is not None:  # the engine's default, AIO and io_uring refused
        (dest / "seccomp.json").write_text(profile)


def start_run(
    root: Path,
    tag: str,
    contract: Contract,
    source: str,
    sandbox: SandboxBackend | None,
    say: Say = print,
    backoff: Backoff | None = None,
    inventory: GpuInventory | None = None,
) -> Night:
    """A new run `tag`: checked before anything is made, then its branch, folder and ledger.

    `sandbox` None: the executor's default (this machine's Docker engine, or the nodes').
    """
    if contract.forgeable:
        say(FORGEABLE)
    check_against_repo(contract, root, source)
    folder = run_dir(root, tag)
    if (folder / "ledger.sqlite").exists():
        raise UserError(
            f"a run tagged {tag!r} already exists in {root} — `autoresearch resume {tag}` or pick another --tag"
        )
    contract = _with_project_image(contract, root, say)
    leftovers = _Leftovers()
    executor = build_executor(contract, root, tag, sandbox, leftovers)
    executor.check(contract)
    agent = build_agent(contract, folder, say)  # its refusals (keys, patches, images) come first
    ws = Workspace(root, tag, contract.implementation)
    base = ws.start()
    dirty = ws.uncommitted()
    if dirty:
        say(
            f"warning: uncommitted changes to implementation files are not part of the run (it starts from "
            f"{base[:12]}): {' '.join(dirty[:5])} — commit them to include them"
        )
    for line in [] if contract.forgeable else stdlib_named(ws.implementation_paths(base)):
        say(f"warning: {line}")
    _make_folder(folder, root, contract, source, base, executor)
    ledger = Ledger(folder)
    leftovers.ledger = ledger
    night = Night(
        contract=contract,
        ledger=ledger,
        workspace=ws,
        executor=executor,
        agent=agent,
        say=say,
        backoff=backoff,
        inventory=inventory,
    )
    say(f"run {tag}: branch {ws.branch} from {base[:12]}; results in {folder}")
    return night


def _with_project_image(contract: Contract, root: Path, say: Say) -> Contract:
    """The contract with the project's own image when it names dependencies (built if need be)."""
    from orchestrator.sandbox import project

    if not project.wanted(contract.sandbox):
        return contract
    from orchestrator.sandbox.engine import connect

    tag = project.image_for(connect(timeout=600), contract.sandbox, root, say)
    return contract.model_copy(
        update={"sandbox": contract.sandbox.model_copy(update={"image": tag})}
    )


def _make_folder(
    folder: Path, root: Path, contract: Contract, source: str, base: str, executor: Executor
) -> None:
    """The run folder, whole or not at all: made beside its place, then renamed into it, so a
    kill at any moment leaves either no run of this tag or one `resume` can open."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    for old in folder.parent.glob(f".{folder.name}.new-*"):
        remove_tree(old)  # a killed start's
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.new-", dir=folder.parent))
    _snapshot(root, contract, staging)
    ledger = Ledger(staging)
    ledger.create_run(
        folder.name, base, contract.model_dump_json(), source, evaluator_hash(staging)
    )
    with contextlib.suppress(InfraError):  # provenance; checked just before, so rarely missing
        ledger.set_image_id(executor.image_id(contract.sandbox.image))
    ledger.close()
    if folder.exists():  # what a killed start left there before it had a ledger (a tuner study)
        remove_tree(folder)
    os.rename(staging, folder)


def read_run(root: Path, tag: str) -> tuple[Ledger, Contract, Workspace]:
    """The ledger, contract and workspace of run `tag`; needs no Docker engine."""
    folder = run_dir(root, tag)
    if not (folder / "ledger.sqlite").exists():
        known = list_runs(root)
        hint = f" (runs here: {', '.join(known)})" if known else ""
        raise RunNotFound(
            f"no run tagged {tag!r} in {root}{hint} — check the tag or the --repo folder"
        )
    ledger = Ledger(folder)
    info = ledger.run()
    if info is None:
        raise RunNotFound(
            f"run {tag!r} in {root} has no run record — start it again with `--tag {tag}`"
        )
    try:
        contract = Contract.model_validate_json(info.contract)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UserError(
            f"run {tag!r} was made by another version of autoresearch: its stored contract no longer "
            f"validates ({where}: {first['msg']}) — finish it with that version, or start a new tag"
        ) from None
    return ledger, contract, Workspace(root, tag, contract.implementation)


def is_live(folder: Path) -> bool:
    """Whether a process is running the run in `folder` now (it holds the run's lock)."""
    try:
        with (folder / "lock").open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    return False


def open_run(
    root: Path,
    tag: str,
    sandbox: SandboxBackend | None,
    say: Say = print,
    backoff: Backoff | None = None,
    *,
    inventory: GpuInventory | None = None,
) -> Night:
    """Run `tag` as its folder holds it, to resume."""
    ledger, contract, ws = read_run(root, tag)
    if contract.forgeable:
        say(FORGEABLE)
    executor = build_executor(contract, root, tag, sandbox, _Leftovers(ledger))
    return Night(
        contract=contract,
        ledger=ledger,
        workspace=ws,
        executor=executor,
        agent=build_agent(contract, ledger.dir, say),
        say=say,
        backoff=backoff,
        inventory=inventory,
    )


def open_measuring(
    root: Path,
    tag: str,
    sandbox: SandboxBackend | None,
    say: Say = print,
    *,
    inventory: GpuInventory | None = None,
) -> Measuring:
    """Run `tag`'s commits to re-measure outside a night (`verify`): no agent, one slot."""
    ledger, contract, ws = read_run(root, tag)
    executor = build_executor(contract, root, tag, sandbox, _Leftovers(ledger))
    return measuring(contract, ledger, ws, executor, say, inventory)


def list_runs(root: Path) -> list[str]:
    return sorted(
        p.name
        for p in (root / RUNS_DIR).glob("*")
        if not p.name.startswith(".") and (p / "ledger.sqlite").exists()
    )
