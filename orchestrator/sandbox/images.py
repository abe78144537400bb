"""Building the sandbox images, offline when no registry answers.

The base is `debian:bookworm-slim` from a registry when one answers, else a local
`debootstrap --variant=minbase` of bookworm from the mirror configured in this
machine's apt sources (never a mirror written into this repo), imported with
`docker import`. Images are labelled with a hash of their inputs: when the label
matches, a build is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import requests
from docker.errors import APIError, BuildError, DockerException, ImageNotFound

from orchestrator.errors import UserError
from orchestrator.sandbox.clis import build_context

IMAGES_DIR = Path(__file__).resolve().parent / "recipes"
"""The image recipes, inside the package: `autoresearch images build` works wherever it is
installed (`sandbox-images/` at the top of the repository shows the same folders)."""
INPUTS_LABEL = "org.autoresearch.inputs"
SUITE = "bookworm"
IMAGE_TAGS = {
    "python": "autoresearch/python:3.11",
    "pytorch-cuda": "autoresearch/pytorch-cuda:latest",
    "agent": "autoresearch/agent:latest",
}
RECIPE_VERSION = "1"
"""Bump when the way images are built changes (it is part of the inputs hash)."""

Say = Callable[[str], None]


def _packages(folder: Path) -> list[str]:
    lines = (folder / "packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def inputs_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(RECIPE_VERSION.encode())
    return h.hexdigest()[:16]


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 .sources or one-line .list)."""
    texts = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for f in texts:
        for stanza in f.read_text().split("\n\n"):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (
                    ln.partition(":")
                    for ln in stanza.splitlines()
                    if ":" in ln and not ln.startswith("#")
                )
            )
            suites = fields.get("suites", "").split()
            if SUITE in suites and "main" in fields.get("components", "").split():
                return fields["uris"].split()[0]
    lists = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for f in lists:
        if not f.exists():
            continue
        for ln in f.read_text().splitlines():
            m = re.match(rf"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s+.*\bmain\b", ln)
            if m:
                return m.group(1)
    raise UserError(
        f"no apt source for Debian {SUITE} main under {sources_dir} — configure one, or let a registry answer"
    )


def _find_image(client: docker.DockerClient, tag: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


def _registry_base(client: docker.DockerClient, say: Say) -> str | None:
    ref = f"debian:{SUITE}-slim"
    if _find_image(client, ref):
        return ref
    try:
        short = docker.from_env(timeout=30)
        short.images.pull("debian", tag=f"{SUITE}-slim")
        return ref
    except (DockerException, requests.RequestException) as e:
        say(f"no registry answers ({type(e).__name__}); building the base offline with debootstrap")
        return None


def _debootstrap_base(client: docker.DockerClient, packages: list[str], say: Say) -> str:
    key = hashlib.sha256(f"{SUITE}\0{' '.join(sorted(packages))}".encode()).hexdigest()[:12]
    tag = f"autoresearch/{SUITE}-base:{key}"
    if _find_image(client, tag):
        say(f"base {tag} is cached")
        return tag
    if shutil.which("debootstrap") is None:
        if os.geteuid() == 0 and Path("/etc/debian_version").exists():
            say("installing Debian's debootstrap (root on Debian)")
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "debootstrap"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        else:
            raise UserError(
                "no registry answers and debootstrap is missing — install debootstrap (as root) or give the box registry access"
            )
    if os.geteuid() != 0:
        raise UserError(
            "an offline base image needs debootstrap as root — run `sudo autoresearch images build`"
        )
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="autoresearch-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap {SUITE} (minbase + {', '.join(packages)}) from {mirror} — about a minute")
        t0 = time.monotonic()
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise UserError(
                f"debootstrap failed: {' | '.join(tail)} — check the apt mirror {mirror}"
            )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (rootfs / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        say(f"debootstrap done in {time.monotonic() - t0:.0f} s; importing")
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE
        )
        assert tar.stdout is not None
        repo, _, version = tag.partition(":")
        client.api.import_image_from_stream(tar.stdout, repository=repo, tag=version)
        if tar.wait() != 0:
            raise UserError("packing the debootstrap root filesystem failed")
    return tag


def build(
    client: docker.DockerClient, name: str = "python", *, base: str = "auto", say: Say = print
) -> str:
    """Build `autoresearch/<name>` unless an image with the same inputs exists; return its tag."""
    folder = IMAGES_DIR / name
    if not (folder / "Dockerfile").exists():
        known = sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile"))
        if not known:
            raise UserError(
                f"no image recipes in {IMAGES_DIR}: this installation is incomplete — reinstall "
                "autoresearch-orchestrator (pip install --force-reinstall autoresearch-orchestrator)"
            )
        raise UserError(f"no image recipe named {name!r} — pick one of: {', '.join(known)}")
    tag = IMAGE_TAGS.get(name, f"autoresearch/{name}:latest")
    digest = inputs_hash(folder)
    existing = _find_image(client, tag)
    if existing is not None and existing.labels.get(INPUTS_LABEL) == digest:
        say(f"{tag} is up to date (inputs {digest})")
        return tag
    if not (folder / "packages.txt").exists():
        # A recipe with its own registry base (the GPU image): build it as written.
        say(f"building {tag} from its Dockerfile's base (needs a registry)")
        _docker_build(client, folder, tag, digest, {}, pull=True)
        say(f"built {tag} (inputs {digest})")
        return tag
    packages = _packages(folder)
    base_ref = _registry_base(client, say) if base in ("auto", "registry") else None
    if base_ref is None and base == "registry":
        raise UserError(
            "no registry answers — use `--base debootstrap` (root, Debian mirror) instead"
        )
    apt_packages = " ".join(packages) if base_ref else ""
    base_ref = base_ref or _debootstrap_base(client, packages, say)
    say(f"building {tag} from {base_ref}")
    with build_context(folder, say) as ctx:  # the recipe's CLIs (npm.txt) fetched by the host
        args = {"BASE": base_ref, "APT_PACKAGES": apt_packages}
        _docker_build(client, ctx, tag, digest, args, pull=False)
    say(f"built {tag} (inputs {digest})")
    return tag


def _docker_build(
    client: docker.DockerClient,
    folder: Path,
    tag: str,
    digest: str,
    args: dict[str, str],
    *,
    pull: bool,
) -> None:
    try:
        client.images.build(
            path=str(folder),
            tag=tag,
            buildargs=args,
            labels={INPUTS_LABEL: digest},
            pull=pull,
            rm=True,
            forcerm=True,
        )
    except BuildError as e:
        raise UserError(f"building {tag} failed: {e.msg} — see `docker build {folder}`") from None
    except APIError as e:
        raise UserError(
            f"building {tag} failed: {e.explanation} — see `docker build {folder}`"
        ) from None
