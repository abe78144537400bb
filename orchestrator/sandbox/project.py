"""A project's own sandbox image: the hardened base, the project's dependencies, hardened again.

Experiments run with the network off, so what a project imports must be in its
image. A contract names it: `sandbox.requirements` (a requirements or lock file
in the repository: the host downloads the wheels into the build context and the
image installs them with no index and no pip), `sandbox.apt` (Debian packages),
or `sandbox.dockerfile` (anything else, built FROM the base). The hardening is
then applied again on top (setuid bits stripped, the sandbox user, the layout),
so a Dockerfile that sets `USER root` or adds a setuid binary cannot undo it.
The image is tagged and labelled with a hash of all its inputs: built on first
use, rebuilt when one changes, reused otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound

from orchestrator.contract.model import Sandbox
from orchestrator.errors import InfraError, UserError
from orchestrator.sandbox.images import IMAGES_DIR, INPUTS_LABEL

Say = Callable[[str], None]
PYTHON = "3.11"
"""The Python of the default image (Debian bookworm): the wheels are downloaded for it."""
REHARDEN = """
USER root
RUN (grep -q '^sandbox:' /etc/passwd || echo 'sandbox:x:10001:10001:sandbox:/tmp:/usr/sbin/nologin' >> /etc/passwd) \\
 && (grep -q '^sandbox:' /etc/group || echo 'sandbox:x:10001:' >> /etc/group) \\
 && mkdir -p /workspace /results && chown 10001:10001 /workspace /results \\
 && (find / -xdev -perm /6000 -type f -exec chmod a-s {} + 2>/dev/null || true)
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
USER 10001:10001
WORKDIR /workspace
"""


def wanted(s: Sandbox) -> bool:
    return bool(s.requirements or s.apt or s.dockerfile)


def inputs(s: Sandbox, root: Path, base_id: str) -> str:
    """A hash of everything the project image is made of."""
    h = hashlib.sha256(f"{base_id}\0{' '.join(sorted(s.apt))}\0".encode())
    for rel in (s.requirements, s.dockerfile):
        h.update(b"\0" + ((root / rel).read_bytes() if rel else b""))
    if s.requirements:  # a local wheel or folder it names: its bytes, not just its name
        for f in _local_files(root / s.requirements):
            h.update(b"\0" + f.name.encode() + b"\0" + f.read_bytes())
    h.update(REHARDEN.encode() + (IMAGES_DIR / "project" / "install_wheels.py").read_bytes())
    return h.hexdigest()[:16]


def _local_files(requirements: Path) -> list[Path]:
    """The files a requirements file names by path (`./wheels/x.whl`), in its own folder's terms."""
    out = []
    for line in requirements.read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry or entry.startswith("-") or "://" in entry:
            continue
        path = (requirements.parent / entry).resolve()
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += sorted(f for f in path.rglob("*") if f.is_file())
    return out


def image_for(client: docker.DockerClient, s: Sandbox, root: Path, say: Say = print) -> str:
    """The project image's tag (built now unless one with the same inputs exists)."""
    try:
        base_id = str(client.images.get(s.image).id)
    except ImageNotFound:
        raise UserError(
            f"sandbox image {s.image} is not built — run `autoresearch images build`"
        ) from None
    digest = inputs(s, root, base_id)
    tag = f"autoresearch/project-{digest}:latest"
    try:
        if client.images.get(tag).labels.get(INPUTS_LABEL) == digest:
            return tag
    except ImageNotFound:
        pass
    say(f"building the project's sandbox image {tag} (dependencies: {_what(s)})")
    with tempfile.TemporaryDirectory(prefix="autoresearch-project-") as tmp:
        ctx = Path(tmp)
        start = _user_image(client, s, root, ctx, digest) if s.dockerfile else s.image
        (ctx / "Dockerfile").write_text(_recipe(s, root, ctx, start))
        _build(client, ctx, tag, digest)
    say(f"built {tag}")
    return tag


def _what(s: Sandbox) -> str:
    parts = [f"requirements {s.requirements}"] * bool(s.requirements) + [
        f"apt {' '.join(s.apt)}"
    ] * bool(s.apt)
    return ", ".join(parts + [f"Dockerfile {s.dockerfile}"] * bool(s.dockerfile))


def _user_image(client: docker.DockerClient, s: Sandbox, root: Path, ctx: Path, digest: str) -> str:
    """The user's Dockerfile, built FROM the base (ARG BASE), in the repository as context."""
    assert s.dockerfile is not None
    tag = f"autoresearch/project-{digest}:user"
    try:
        client.images.build(path=str(root), dockerfile=s.dockerfile, tag=tag,
                            buildargs={"BASE": s.image}, rm=True, forcerm=True, pull=False)  # fmt: skip
    except BuildError as e:
        raise UserError(
            f"sandbox.dockerfile {s.dockerfile}: the build failed ({e.msg}) — fix it"
        ) from None
    return tag


def _recipe(s: Sandbox, root: Path, ctx: Path, start: str) -> str:
    lines = [f"FROM {start}", "USER root"]
    if s.apt:
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            + " ".join(s.apt)
            + " && rm -rf /var/lib/apt/lists/*"
        )
    if s.requirements:
        _download(root / s.requirements, ctx / "wheels")
        shutil.copy2(IMAGES_DIR / "project" / "install_wheels.py", ctx / "install_wheels.py")
        lines += [
            "COPY wheels /tmp/wheels",
            "COPY install_wheels.py /tmp/install_wheels.py",
            "RUN python3 /tmp/install_wheels.py /tmp/wheels && rm -rf /tmp/wheels /tmp/install_wheels.py",
        ]
    return "\n".join(lines) + "\n" + REHARDEN


def _download(requirements: Path, dest: Path) -> None:
    """The wheels of a requirements file, for the image's Python, fetched by the host."""
    dest.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-r", str(requirements), "-d", str(dest),
         "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp"],
        capture_output=True, text=True, cwd=requirements.parent,
    )  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip download failed"])[-1]
        raise UserError(
            f"sandbox.requirements {requirements.name}: {last[:300]} — fix the file or the index"
        )


def _build(client: docker.DockerClient, ctx: Path, tag: str, digest: str) -> None:
    try:
        client.images.build(path=str(ctx), tag=tag, labels={INPUTS_LABEL: digest}, rm=True,
                            forcerm=True, pull=False)  # fmt: skip
    except BuildError as e:
        raise UserError(f"building the project image {tag} failed: {e.msg}") from None
    except docker.errors.APIError as e:
        raise InfraError(f"building the project image {tag} failed: {e}") from e
