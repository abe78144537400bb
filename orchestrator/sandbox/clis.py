"""The coding-agent CLIs of an image recipe (`npm.txt`), fetched by the host into its build context.

The image build has no network of its own worth trusting (no registry, perhaps an
intercepting proxy), so the host's npm — the ordinary client, with the host's
certificates and proxy settings — installs the pinned packages of `npm.txt` into
`clis/` of a temporary copy of the recipe, and the Dockerfile copies that folder
in. The packages' install scripts run here, on the host that will run the image
(they pick a native binary for this platform). A recipe without `npm.txt` is
built from its own folder.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator.errors import UserError

Say = Callable[[str], None]
NPM_TIMEOUT_S = 900


def npm_packages(folder: Path) -> list[str]:
    """The pinned npm packages of a recipe (none without `npm.txt`)."""
    path = folder / "npm.txt"
    if not path.exists():
        return []
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln]


@contextlib.contextmanager
def build_context(folder: Path, say: Say = print) -> Iterator[Path]:
    """The folder to build `folder`'s image from: itself, or a copy with `clis/` installed."""
    packages = npm_packages(folder)
    if not packages:
        yield folder
        return
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(
            f"the {folder.name} image needs npm on this host to fetch {', '.join(packages)} "
            "from the npm registry — install it (`apt-get install npm`) and build again"
        )
    with tempfile.TemporaryDirectory(prefix="autoresearch-clis-") as tmp:
        ctx = Path(tmp) / folder.name
        shutil.copytree(folder, ctx)
        (ctx / "clis").mkdir()
        (ctx / "clis" / "package.json").write_text('{"private": true}\n')
        say(f"npm install {' '.join(packages)} (on this host, from its npm registry)")
        t0 = time.monotonic()
        cmd = [npm, "install", "--prefix", str(ctx / "clis"), "--omit=dev", "--no-audit",
               "--no-fund", "--no-package-lock", "--loglevel=error", *packages]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(
                f"npm install took over {NPM_TIMEOUT_S} s — check the registry"
            ) from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise UserError(
                f"npm install {' '.join(packages)} failed: {' | '.join(tail)[:400]} — check "
                f"{folder / 'npm.txt'} and this host's npm registry (`npm config get registry`)"
            )
        say(f"npm install done in {time.monotonic() - t0:.0f} s")
        yield ctx
