"""gVisor's `runsc` as the engine has it registered: there or not, and on which platform it runs.

Since 2023 gVisor runs its sandboxes on the systrap platform, where a system call
costs 1–3 µs; before, on ptrace, about 70 µs (Debian 12's own runsc, 2022-12, is
one of those). Everything an evaluator does under runsc pays for its system calls,
a harness-mode proxied call four of them, so an old runsc is worth naming.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

UPGRADE = "scripts/ensure-runsc (make engine) installs bookworm-backports' on Debian 12"


def platform(path: str) -> str | None:
    """The platform `path` runs sandboxes on by default ("systrap", "ptrace", "kvm"), or None."""
    try:
        done = subprocess.run([path, "flags"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    # runsc prints its flags on stderr: "specifies which platform to use: ... (default "ptrace")"
    found = re.search(r'which platform to use:[^\n]*\(default "(\w+)"\)', done.stdout + done.stderr)
    return found.group(1) if found else None


def chosen(args: list[str]) -> str | None:
    """The platform that the engine's `runtimeArgs` for runsc name (`--platform=kvm`), or None."""
    for i, arg in enumerate(args):
        name, _, value = arg.lstrip("-").partition("=")
        if arg.startswith("-") and name == "platform":
            return value or (args[i + 1] if i + 1 < len(args) else None)
    return None


def describe(runtimes: dict[str, Any]) -> tuple[bool, str]:
    """Whether runsc is registered, and one line saying so (its platform, and a word if slow)."""
    runsc = runtimes.get("runsc")
    if not runsc:
        return False, "runsc not registered (optional hardening)"
    path = str(runsc.get("path") or "runsc")
    forced = chosen([str(a) for a in runsc.get("runtimeArgs") or []])
    kind = forced or platform(path)
    if kind == "ptrace":
        fix = "drop --platform from the engine's runtimeArgs for runsc" if forced else UPGRADE
        return True, (
            f"runsc registered ({path}, the ptrace platform: ~70 µs per system call in a "
            f"sandbox, against 1–3 µs on systrap) — {fix}"
        )
    return True, f"runsc registered ({path}{f', {kind} platform' if kind else ''})"
