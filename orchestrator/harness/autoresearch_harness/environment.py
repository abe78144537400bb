"""What of the container's environment the trusted side keeps (used by boot.py).

A container's environment is its image's (`ENV` in the image, a project's
`sandbox.dockerfile` included) under what the orchestrator set; the orchestrator
lists the names it set in AUTORESEARCH_CHOSEN_ENV (the contract's `sandbox.env`
among them), and those are kept as they are. Of the image's own, the trusted side
drops every variable that makes a program load code or settings from somewhere
(`PYTHONPATH=/workspace` would run a candidate's `sitecustomize.py` as the
evaluator's user): every `LD_*` and `AUTORESEARCH_*`, every `PYTHON*` but the few that only choose
buffering and encoding (`PYTHONWARNINGS` too: an evaluator made strict says so in
`sandbox.env`), the shells' start files, other interpreters' preloads; every other
variable whose value names a place the candidate can write (`HF_HOME=/tmp/hf`);
and `PATH` loses its entries there and its relative ones. The candidate's worker
keeps the image's environment whole: only the trusted side is chosen for.
Standard library only.
"""

from __future__ import annotations

import os
import re

CHOSEN = "AUTORESEARCH_CHOSEN_ENV"
"""Comma-separated names the orchestrator set on the container (the engine's own merge hides
which values came from the image)."""
PYTHON_KEPT = frozenset(
    {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONIOENCODING", "PYTHONUTF8",
     "PYTHONHASHSEED", "PYTHONFAULTHANDLER"}
)  # fmt: skip
LOADERS = frozenset(
    {"BASH_ENV", "ENV", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "GLIBC_TUNABLES",
     "PERL5LIB", "PERL5OPT", "PERLLIB", "NODE_OPTIONS", "NODE_PATH", "RUBYOPT", "RUBYLIB",
     "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "OPENSSL_CONF", "OPENSSL_ENGINES",
     "OPENSSL_MODULES", "PYTEST_ADDOPTS", "PYTEST_PLUGINS", "CUDA_INJECTION64_PATH"}
)  # fmt: skip
"""Variables that name code or settings a program loads, wherever they point."""
CANDIDATE_WRITES = ("/workspace", "/tmp", "/exchange", "/dev/shm", "/dev/mqueue")
"""Where the candidate's user can write inside the sandbox (the root file system is read-only)."""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TOKENS = re.compile(r"[\s:;,=\"']+")


def _loader(name: str) -> bool:
    if name.startswith(("LD_", "AUTORESEARCH_")):  # ours are all chosen: an image's is a forgery
        return True
    return (name.startswith("PYTHON") and name not in PYTHON_KEPT) or name in LOADERS


def _candidates(path: str) -> bool:
    """Whether an absolute path is (or leads, through the image's links) where the candidate writes."""
    seen = ("/" + os.path.normpath(p).lstrip("/") for p in (path, os.path.realpath(path)))
    return any(p == top or p.startswith(top + "/") for p in seen for top in CANDIDATE_WRITES)


def _names_candidates(value: str) -> bool:
    return any(t.startswith("/") and _candidates(t) for t in _TOKENS.split(value))


def _path(value: str) -> str:
    kept = [p for p in value.split(":") if p.startswith("/") and not _candidates(p)]
    return ":".join(kept) or DEFAULT_PATH


def trusted(environ: dict[str, str]) -> dict[str, str]:
    """The environment for the trusted side: the orchestrator's names whole, the image's filtered."""
    chosen = {n for n in environ.get(CHOSEN, "").split(",") if n}
    out: dict[str, str] = {}
    for name, value in environ.items():
        if name in chosen or name == CHOSEN:
            out[name] = value
        elif name == "PATH":
            out[name] = _path(value)
        elif not _loader(name) and not _names_candidates(value):
            out[name] = value
    return out
