"""A project's requirements file, fetched by the host as wheels and nothing else.

The host runs `pip download` as whoever runs autoresearch (often root), so no line
may make pip build or run anything: a line names a package by name (versions,
extras, markers and `--hash` allowed), or a wheel (`./wheels/x.whl`, or a URL to a
`.whl`). A local folder, an archive that is not a wheel, a version-control URL and
every option line (`-e`, `-r`, `--no-binary`, `--index-url`, ...) is refused with
one line naming it. What the lines cannot show — a wheel whose own metadata
depends on a folder or a repository — is caught while pip runs: it runs with an
audit hook that refuses to start any process (a build backend, git), and in
isolated mode, so no `pip.py` of the repository is imported in its place.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from orchestrator.errors import UserError

PYTHON = "3.11"
"""The Python of the default image (Debian bookworm): the wheels are downloaded for it."""
_COMMENT = re.compile(r"(^|\s+)#.*$")
"""pip's own rule for a comment (a `#` at the start or after white space)."""
_VCS = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz", ".tar.xz", ".txz",
             ".tlz", ".tar.lz", ".tar.lzma")  # fmt: skip
"""What pip takes for a file when a line names one that exists (`x.tar.gz`, no `./`)."""
_REFUSED = "autoresearch refused to start a process"
GUARD = f"""
import sys
def _refuse(event, args):
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                 "os.fork", "os.forkpty", "pty.spawn"):
        raise PermissionError("{_REFUSED}: " + repr(args[0])[:200])
sys.addaudithook(_refuse)
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
"""pip, in a process that starts no other: probes for its user agent (`uname`) fail quietly,
a build or a clone fails loudly."""


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each requirement line, joined and stripped as pip does."""
    joined: list[tuple[int, str]] = []
    held: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.endswith("\\") or _COMMENT.match(line):
            line = " " + line if _COMMENT.match(line) else line
            joined.append((first, "".join([*held, line])) if held else (number, line))
            held = []
        else:
            first = first if held else number
            held.append(line.strip("\\"))
    if held:
        joined.append((first, "".join(held)))
    stripped = ((n, _COMMENT.sub("", line).strip()) for n, line in joined)
    return [(n, line) for n, line in stripped if line]


def _refuse(file: str, number: int, line: str, why: str) -> UserError:
    return UserError(
        f"sandbox.requirements {file}:{number}: {line[:120]!r} {why} — name a package "
        "(`name==1.2`) or a wheel file (`./wheels/name-1.2-py3-none-any.whl`) instead"
    )


def _link(spec: str) -> str | None:
    """The URL or path a requirement names, as pip reads it; None for a package by name."""
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return spec.split(";", 1)[0].strip()  # a path or a URL
    if req.url is None and not req.name.lower().endswith(_ARCHIVES):
        return None
    return req.url or spec.split("[", 1)[0].split(";", 1)[0].strip()  # `x.tar.gz` is a file


def _why(link: str, folder: Path) -> str | None:
    """Why a URL or path may not be fetched, or None for a wheel."""
    if link.startswith(_VCS):
        return "is a version-control URL (pip would clone and build it on this host)"
    if not link.split("#", 1)[0].split("?", 1)[0].endswith(".whl"):
        return "is not a wheel (pip would build it on this host)"
    if "://" in link or link.startswith("file:") or (folder / link).is_file():
        return None
    return "is not a wheel file here"


def check(requirements: Path) -> list[Path]:
    """The local wheels `requirements` names (its own folder's terms); UserError for a line that
    could make the host build, clone or read another file."""
    file, folder, wheels = requirements.name, requirements.parent, []
    for number, line in logical_lines(requirements.read_text(encoding="utf-8-sig")):
        words = line.split()
        options = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
        if options == 0:
            raise _refuse(file, number, line, "is an option line")
        if "$" in line:
            raise _refuse(file, number, line, "names an environment variable")
        if any(not w.startswith("--hash") for w in words[options:]):
            raise _refuse(file, number, line, "carries an option other than --hash")
        link = _link(" ".join(words[:options]))
        why = None if link is None else _why(link, folder)
        if why is not None:
            raise _refuse(file, number, line, why)
        if link is not None and "://" not in link and not link.startswith("file:"):
            wheels.append((folder / link).resolve())
    return wheels


def download(requirements: Path, dest: Path) -> None:
    """The wheels of a checked requirements file, for the image's Python, fetched by the host."""
    check(requirements)
    dest.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-I", "-c", GUARD, "download", "-q", "-r", str(requirements),
         "-d", str(dest), "--only-binary=:all:", "--python-version", PYTHON,
         "--implementation", "cp"],
        capture_output=True, text=True, cwd=requirements.parent,
    )  # fmt: skip
    if proc.returncode == 0:
        return
    lines = proc.stderr.strip().splitlines() or ["pip download failed"]
    if any(_REFUSED in ln for ln in lines):
        why = next((ln for ln in lines if "while executing command" in ln), lines[-1]).strip()
        raise UserError(
            f"sandbox.requirements {requirements.name}: a package would be built or cloned on this "
            f"host ({why[:200]}) — depend on wheels only (a wheel's own dependencies included)"
        )
    raise UserError(
        f"sandbox.requirements {requirements.name}: {lines[-1][:300]} — fix the file or the index"
    )
