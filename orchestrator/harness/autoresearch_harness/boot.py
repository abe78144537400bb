"""The trusted side's entry in a harness-mode sandbox: make the evaluator's world, then run it.

Run as the container's main process, as the evaluator's user (never the
candidate's), with `python3 -I -S` so nothing of the candidate's can reach it:

    python3 -I -S /harness/autoresearch_harness/boot.py COMMAND

It gives the trusted side a private home and temporary folder (a tmpfs only its
user can enter), draws the run's seed into a file there (never the environment:
the engine starts the candidate's worker with the container's environment, and
under gVisor another user can read a process's environment), writes the .pth file that installs the import hook in
every Python process of the evaluator, and runs COMMAND with sh in the trusted
tree. With services in the contract, it first starts the loopback forwarder
(services.py) and names each service's URL in the evaluator's environment. Of the
image's own environment the evaluator gets only what cannot steer it to the
candidate's files (environment.py): the orchestrator's names are kept whole.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

HARNESS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIVATE = os.environ.get("AUTORESEARCH_PRIVATE", "/trusted-tmp")


def _user_site(home: str, lines: list[str]) -> None:
    """A .pth file in the user site of `home`: every Python process there reads it first."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = os.path.join(home, ".local", "lib", version, "site-packages")
    os.makedirs(site, mode=0o700, exist_ok=True)
    with open(os.path.join(site, "autoresearch-harness.pth"), "w") as f:
        f.write("".join(f"{line}\n" for line in lines))


def _private_home() -> dict[str, str]:
    home, tmp = os.path.join(PRIVATE, "home"), os.path.join(PRIVATE, "tmp")
    for d in (home, tmp):
        os.makedirs(d, mode=0o700, exist_ok=True)
    _user_site(home, [HARNESS, "import autoresearch_harness.hook"])
    # Not in the environment: under gVisor another user may read /proc/<pid>/environ.
    seed = os.path.join(PRIVATE, "seed")
    fd = os.open(seed, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            str(int.from_bytes(os.urandom(4), "little") % 2**31)
        )  # not `secrets`: 11 ms to import
    return {
        "HOME": home,
        "TMPDIR": tmp,
        "PYTHONUSERBASE": os.path.join(home, ".local"),
        "AUTORESEARCH_SEED_FILE": seed,
        # An evaluator that still reads the variable fails saying what to use instead.
        "AUTORESEARCH_SEED": "read-the-seed-with-autoresearch_harness.seed()",
    }


def _traps(env: dict[str, str]) -> None:
    """A bytecode trap for every module of the implementation, in this Python's own format.

    The implementation's files are in the trusted tree as data. The import hook gives a
    stand-in for them; a Python that does not load the hook (run with -I, -s or -S, or a
    venv's) would find the source instead. It finds this first: an unchecked pyc (PEP 552)
    in the `__pycache__` the orchestrator mounted writable for us, whose code raises.
    """
    import importlib.util
    import json
    import marshal

    root = env.get("AUTORESEARCH_TRUSTED_ROOT", "/trusted")
    for rel in json.loads(env.get("AUTORESEARCH_IMPLEMENTATION", "[]")):
        if not rel.endswith(".py"):
            continue
        source = os.path.join(root, rel)
        message = (
            f"{rel} is the implementation's: it runs only on the candidate's side, through the "
            "harness's import hook, which this Python did not load (was it run with -I, -s or -S?)"
        )
        code = compile(f"raise ImportError({message!r})", source, "exec")
        header = importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little") + bytes(8)
        try:
            with open(importlib.util.cache_from_source(source), "wb") as f:
                f.write(header + marshal.dumps(code))
        except OSError:
            continue  # no trap folder (a file the orchestrator did not list): the hook still guards


def _services(env: dict[str, str]) -> dict[str, str]:
    """The contract's services at loopback URLs (services.py), bound before any candidate code runs."""
    if not env.get("AUTORESEARCH_SERVICES"):
        return {}
    urls: dict[str, str] = _harness("services").start(env)
    return urls


def _harness(name: str) -> Any:
    if HARNESS not in sys.path:
        sys.path.insert(0, HARNESS)  # -I: the script's folder is not on the path
    return importlib.import_module(f"autoresearch_harness.{name}")


def _trusted_env(env: dict[str, str]) -> dict[str, str]:
    """The container's environment less what would steer the evaluator to the candidate's files."""
    kept: dict[str, str] = _harness("environment").trusted(env)
    return kept


def main(argv: list[str]) -> int:
    """`boot.py COMMAND` (harness mode) or `boot.py --shared COMMAND` (the library only)."""
    shared = len(argv) == 3 and argv[1] == "--shared"
    if len(argv) != 2 and not shared:
        print("usage: boot.py [--shared] COMMAND", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONNOUSERSITE", "PYTHONSTARTUP")}
    if shared:  # one process, one user: the library, no hook, nothing kept apart
        home = env.get("HOME", "/tmp")
        # the repository comes first on the path, so an installed copy is never tested instead
        _user_site(home, [HARNESS, f"import sys; sys.path.insert(0, {os.getcwd()!r})"])
        env["PYTHONUSERBASE"] = os.path.join(home, ".local")
        env.update(_services(env))
        os.execve("/bin/sh", ["/bin/sh", "-c", argv[2]], env)
    if os.getuid() == int(os.environ.get("AUTORESEARCH_CANDIDATE_UID", "-1")):
        print("harness: the evaluator must not run as the candidate's user", file=sys.stderr)
        return 2
    env = _trusted_env(env)  # the image's ENV (a project's Dockerfile) never steers this side
    env.update(_private_home())
    _traps(env)
    env.update(_services(env))
    os.chdir(env.get("AUTORESEARCH_TRUSTED_ROOT", "/trusted"))
    os.execve("/bin/sh", ["/bin/sh", "-c", argv[1]], env)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv))
