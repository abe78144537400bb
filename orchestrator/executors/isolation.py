"""The run stage in harness mode: the evaluator and the candidate on two sides of one sandbox.

The container's main process is the trusted evaluator, as a user of its own: it
runs in `/trusted`, a read-only copy of the frozen tree (the implementation's
files in it as data, exactly as frozen), with the evaluator's files mounted over
it, and writes `/results`, which only it may write. The candidate's code runs in
a worker the engine starts as the candidate's user, in `/workspace` (the
candidate's own copy of the tree). Importing a module of the implementation on
the trusted side reaches the worker (`orchestrator/harness/`); plain data crosses
by value, everything else by reference. Neither side gains a capability, and the
network stays off.

What each side can reach:
- the evaluator: its own private tmpfs (`/trusted-tmp`, mode 0700), its seed
  (drawn inside it), its output (the metric channel), `/results`;
- the candidate: `/workspace`, `/tmp`, the worker's socket folder `/exchange`, its
  own output (the candidate's log). It cannot signal, trace or read the memory
  of a process of another user, nor write anything of the evaluator's.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from orchestrator import harness
from orchestrator.contract.paths import matches_any
from orchestrator.errors import InfraError
from orchestrator.folders import remove_paths, unpack
from orchestrator.sandbox import Mount, Worker

if TYPE_CHECKING:
    from orchestrator.contract.model import Contract
    from orchestrator.sandbox.disk import Workdir

TRUSTED_ROOT = "/trusted"
HARNESS = "/harness"
EXCHANGE = "/exchange"
PRIVATE = "/trusted-tmp"
SOCKET = f"{EXCHANGE}/worker.sock"
TRUSTED_UID = 10002
"""The evaluator's uid when the orchestrator runs as root (else the orchestrator's own)."""


def trusted_user(candidate: str) -> tuple[int, int]:
    """The evaluator's uid and gid: never root, never the candidate's.

    As root we give the results folder to uid 10002; otherwise the evaluator runs
    as the orchestrator's own uid, which owns the folders it made.
    """
    cand_uid = int(candidate.split(":")[0])
    if os.getuid() == 0:
        uid = TRUSTED_UID if cand_uid != TRUSTED_UID else TRUSTED_UID + 1
        return uid, uid
    if os.getuid() == cand_uid:
        raise InfraError(
            f"sandbox.user {candidate} is this machine's uid running autoresearch: the evaluator "
            "needs a uid of its own — set sandbox.user to another uid:gid"
        )
    return os.getuid(), os.getgid()


def implementation_files(tree: Path, patterns: list[str]) -> list[str]:
    """The repo-relative files of the unpacked candidate tree that are implementation."""
    out = []
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), tree).replace(os.sep, "/")
            if matches_any(rel, patterns):
                out.append(rel)
    return sorted(out)


def stdlib_named(files: list[str]) -> list[str]:
    """Of the implementation's repo-relative files, those at the repository's top (first on the
    trusted side's `sys.path`) named like a module of the standard library: harness mode never
    imports the candidate's file for that name (`autoresearch_harness/hook.py`), so an `import`
    of it fails on the trusted side. One line each, for `doctor` and the start of a run."""
    out = []
    for rel in files:
        parts = rel.split("/")
        if len(parts) == 1 and parts[0].endswith(".py"):
            name = parts[0][: -len(".py")]
        elif len(parts) == 2 and parts[1] == "__init__.py":
            name = parts[0]
        else:
            continue
        if name in sys.stdlib_module_names:
            out.append(f"{rel} is named like the standard library's {name} — harness mode never "
                       f"imports the candidate's file for that name (`import {name}` fails on "
                       "the trusted side): rename it")  # fmt: skip
    return out


def view_of(disk: Workdir) -> Path:
    """Where a work folder holds the evaluator's tree (mounted at TRUSTED_ROOT)."""
    return disk.root / "trusted"


def trusted_view(
    tree: bytes,
    disk: Workdir,
    implementation: list[str],
    hidden: list[str],
    skip: frozenset[str] = frozenset(),
) -> Path:
    """The evaluator's tree: the frozen commit, the implementation's files in it as data.

    An evaluator reads them at their own paths (to measure their size or complexity);
    importing one gives a stand-in (the import hook), and its code never runs here: the
    hook's audit refuses it, and each folder that holds implementation code gets an
    empty `__pycache__` where the trusted side's boot writes a bytecode trap for every
    module, so a Python started without the hook (`-I`, `-s`, a venv) fails to import
    it instead of running it (see `autoresearch_harness/boot.py`). `skip`: paths a container
    made ahead already mounted over (executors/seats.py), never written.
    """
    view = view_of(disk)
    unpack(tree, view, skip=skip)
    remove_paths(view, hidden)
    for folder in trap_folders(implementation):
        (view / folder).mkdir(parents=True, exist_ok=True)
    return view


def trap_folders(implementation: list[str]) -> list[str]:
    """The `__pycache__` folders (repo-relative) of the implementation's Python modules."""
    return sorted(
        {
            str(PurePosixPath(rel).parent / "__pycache__")
            for rel in implementation
            if rel.endswith(".py")
        }
    )


def give_results_to(disk: Workdir, uid: int, gid: int) -> None:
    """Only the evaluator may write what a sealed scorer will read."""
    if os.getuid() == 0:
        os.chown(disk.results, uid, gid)
    os.chmod(disk.results, 0o755)


def command(evaluator_command: str) -> str:
    """The container's command: the trusted entry, which runs the evaluator's command."""
    boot = f"{HARNESS}/autoresearch_harness/boot.py"
    return f"exec python3 -I -S {boot} {shlex.quote(evaluator_command)}"  # -S: no site to import


def shared_command(evaluator_command: str) -> str:
    """Shared mode: the same library on the path, in the candidate's tree and process."""
    boot = f"{HARNESS}/autoresearch_harness/boot.py"
    return f"exec python3 {boot} --shared {shlex.quote(evaluator_command)}"


def worker(candidate: str) -> Worker:
    script = f"{HARNESS}/autoresearch_harness/worker.py"
    # -u: what the candidate prints reaches its log even when the sandbox ends it
    return Worker(command=("python3", "-u", script, SOCKET), user=candidate)


def mounts(view: Path) -> list[Mount]:
    return [Mount(view, TRUSTED_ROOT), Mount(harness.mounted(), HARNESS)]


def tmpfs(c: Contract, trusted: tuple[int, int], implementation: list[str]) -> dict[str, str]:
    cand_uid, cand_gid = c.sandbox.user.split(":")
    size = max(16 * 1024**2, c.sandbox.tmpfs // 4)
    owner = f"uid={trusted[0]},gid={trusted[1]}"
    traps = {
        f"{TRUSTED_ROOT}/{folder}": f"rw,nosuid,nodev,noexec,size=4m,mode=0755,{owner}"
        for folder in trap_folders(implementation)
    }
    return {
        PRIVATE: f"rw,nosuid,nodev,size={size},mode=0700,{owner}",
        EXCHANGE: f"rw,nosuid,nodev,noexec,size=1m,mode=0755,uid={cand_uid},gid={cand_gid}",
        **traps,
    }


SPIN_US = {"runc": 50, "runsc": 0}
"""How long each side's read polls before it blocks (`wire.Reader`), by runtime. Under runc it
takes a proxied call from ~58 to ~20 µs; under gVisor on 2 cores it made one slower (210 →
250–390 µs: the pollers take the CPUs its own kernel needs), so there it is off. Off too for
a process on one core (orchestrator/sandbox/cores.py): there a poll keeps the answer waiting."""


def environment(c: Contract, files: list[str], added: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        "AUTORESEARCH_TRUSTED_ROOT": TRUSTED_ROOT,
        "AUTORESEARCH_IMPLEMENTATION": json.dumps(files),
        "AUTORESEARCH_ADDED": json.dumps(sorted(set(added) & set(files))),
        "AUTORESEARCH_WORKER": SOCKET,
        "AUTORESEARCH_WORKSPACE": "/workspace",
        "AUTORESEARCH_PRIVATE": PRIVATE,
        "AUTORESEARCH_CANDIDATE_UID": c.sandbox.user.split(":")[0],
        "AUTORESEARCH_CALL_S": f"{min(c.evaluator.call_timeout_s, c.budget.seconds):g}",
        "AUTORESEARCH_SPIN_US": str(SPIN_US[c.sandbox.runtime]),
    }
