"""The seccomp profile experiments run under: the engine's default, with AIO and io_uring refused.

One experiment could otherwise take all of the host's AIO contexts (`fs.aio-max-nr`
is host-wide: the host's own `io_setup` then fails with EAGAIN), and io_uring is
a large kernel attack surface. The base is the engine's own default profile read
from a file (Debian: golang-github-docker-docker-dev; elsewhere a copy named by
AUTORESEARCH_SECCOMP_BASE), so everything else it refuses stays refused. Without
a base the engine's built-in default applies, and `doctor --sandbox` says so.
A contract's own `sandbox.seccomp` replaces all of this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

BASES = (Path("/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json"),)
REFUSED = (
    "io_setup", "io_submit", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "io_destroy", "io_cancel", "io_uring_setup", "io_uring_enter", "io_uring_register",
)  # fmt: skip


def base_profile() -> Path | None:
    named = os.environ.get("AUTORESEARCH_SECCOMP_BASE")
    for path in [Path(named)] if named else BASES:
        if path.is_file():
            return path
    return None


def default_profile() -> str | None:
    """The default profile's JSON text; None when no base can be found (the engine's applies)."""
    base = base_profile()
    if base is None:
        return None
    profile = json.loads(base.read_text())
    for rule in profile.get("syscalls", []):
        if rule.get("action") == "SCMP_ACT_ALLOW":
            rule["names"] = [n for n in rule.get("names", []) if n not in REFUSED]
    return json.dumps(profile)
