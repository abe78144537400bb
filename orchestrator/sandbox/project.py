"""A project's own sandbox image: the hardened base, the project's dependencies, hardened again.

Experiments run with the network off, so what a project imports must be in its
image. A contract names it: `sandbox.requirements` (a requirements or lock file
in the repository: the host downloads the wheels into the build context and the
image installs them with no index and no pip), `sandbox.apt` (Debian packages),
or `sandbox.dockerfile` (anything else, built FROM the base). The hardening is
then applied again on top (setuid and setgid bits and file capabilities stripped
from every file, the sandbox user, the layout), so a Dockerfile that sets `USER
root` or adds a setuid binary cannot undo it. What an image carries besides its
files and could outlast the build is refused with one line naming it: a `VOLUME`
(a writable folder past the read-only root and `sandbox.disk`), `ONBUILD`,
`HEALTHCHECK` or `ENTRYPOINT` (commands run as the evaluator's user), `SHELL`,
`STOPSIGNAL`. Its `ENV` reaches the candidate; the trusted side keeps only what
cannot steer it to the candidate's files (harness/autoresearch_harness/environment.py).
The requirements' lines are wheels only (requirements.py). The image is tagged and
labelled with a hash of all its inputs: built on first use, rebuilt when one
changes, reused otherwise.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import BuildError, ImageNotFound

from orchestrator.contract.model import Sandbox
from orchestrator.errors import InfraError, UserError
from orchestrator.sandbox import requirements
from orchestrator.sandbox.images import IMAGES_DIR, INPUTS_LABEL

Say = Callable[[str], None]
RECIPE = IMAGES_DIR / "project"
REHARDEN = """
USER root
COPY strip_privileges.py /tmp/strip_privileges.py
RUN (grep -q '^sandbox:' /etc/passwd || echo 'sandbox:x:10001:10001:sandbox:/tmp:/usr/sbin/nologin' >> /etc/passwd) \\
 && (grep -q '^sandbox:' /etc/group || echo 'sandbox:x:10001:' >> /etc/group) \\
 && mkdir -p /workspace /results && chown 10001:10001 /workspace /results \\
 && python3 /tmp/strip_privileges.py / && rm /tmp/strip_privileges.py
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
USER 10001:10001
WORKDIR /workspace
"""
REFUSED = {
    "Volumes": ("VOLUME", "a folder every container could write past the read-only root"),
    "OnBuild": ("ONBUILD", "commands that would run in the next build"),
    "Healthcheck": ("HEALTHCHECK", "a command run as the evaluator's user"),
    "Entrypoint": ("ENTRYPOINT", "a command run as the evaluator's user before it"),
    "Shell": ("SHELL", "the shell the re-hardening runs in"),
    "StopSignal": ("STOPSIGNAL", "a stop the sandbox never uses (it kills)"),
}
"""What a sandbox image may not carry: its config key, the instruction that sets it, why."""
APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")


def wanted(s: Sandbox) -> bool:
    return bool(s.requirements or s.apt or s.dockerfile)


def inputs(s: Sandbox, root: Path, base_id: str) -> str:
    """A hash of everything the project image is made of; UserError for an apt name or a
    requirements line no image is built from (before anything is fetched or built)."""
    bad = next((name for name in s.apt if not APT_NAME.match(name)), None)
    if bad is not None:
        raise UserError(f"sandbox.apt: {bad!r} is not a Debian package name — fix the list")
    h = hashlib.sha256(f"{base_id}\0{' '.join(sorted(s.apt))}\0".encode())
    for rel in (s.requirements, s.dockerfile):
        h.update(b"\0" + ((root / rel).read_bytes() if rel else b""))
    if s.requirements:  # a local wheel it names: its bytes, not just its name
        for wheel in requirements.check(root / s.requirements):
            h.update(b"\0" + wheel.name.encode() + b"\0" + wheel.read_bytes())
    h.update(REHARDEN.encode())
    for name in ("install_wheels.py", "strip_privileges.py"):
        h.update((RECIPE / name).read_bytes())
    return h.hexdigest()[:16]


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
        refuse_config(client, s.image, f"sandbox.image {s.image}")
        start = _user_image(client, s, root, ctx, digest) if s.dockerfile else s.image
        if s.dockerfile:
            refuse_config(client, start, f"sandbox.dockerfile {s.dockerfile}")
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


def refuse_config(client: docker.DockerClient, image: str, source: str) -> None:
    """UserError naming the first instruction `image` carries that no sandbox image may."""
    config = client.images.get(image).attrs.get("Config") or {}
    for key, (instruction, why) in REFUSED.items():
        if config.get(key):
            raise UserError(
                f"{source}: {instruction} is not allowed in a sandbox image ({why}) — remove it"
            )


def _recipe(s: Sandbox, root: Path, ctx: Path, start: str) -> str:
    shutil.copy2(RECIPE / "strip_privileges.py", ctx / "strip_privileges.py")
    lines = [f"FROM {start}", "USER root"]
    if s.apt:
        lines.append(
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            + " ".join(s.apt)
            + " && rm -rf /var/lib/apt/lists/*"
        )
    if s.requirements:
        requirements.download(root / s.requirements, ctx / "wheels")
        shutil.copy2(RECIPE / "install_wheels.py", ctx / "install_wheels.py")
        lines += [
            "COPY wheels /tmp/wheels",
            "COPY install_wheels.py /tmp/install_wheels.py",
            "RUN python3 /tmp/install_wheels.py /tmp/wheels && rm -rf /tmp/wheels /tmp/install_wheels.py",
        ]
    return "\n".join(lines) + "\n" + REHARDEN


def _build(client: docker.DockerClient, ctx: Path, tag: str, digest: str) -> None:
    try:
        client.images.build(path=str(ctx), tag=tag, labels={INPUTS_LABEL: digest}, rm=True,
                            forcerm=True, pull=False)  # fmt: skip
    except BuildError as e:
        raise UserError(f"building the project image {tag} failed: {e.msg}") from None
    except docker.errors.APIError as e:
        raise InfraError(f"building the project image {tag} failed: {e}") from e
