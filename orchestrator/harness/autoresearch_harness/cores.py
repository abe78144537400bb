"""The one core the host leased for this sandbox (orchestrator/sandbox/cores.py).

The trusted boot and the candidate's worker pin themselves to it before anything else runs,
so the two processes that answer each other wake each other on one core instead of across
two (a round trip's cost, several times over on a virtual machine). A read there never polls:
the other side, which has to answer, needs the core the poller would spin on. Standard
library only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

CORE = "AUTORESEARCH_CORE"
CHOSEN = "AUTORESEARCH_CHOSEN_ENV"
SPIN = "AUTORESEARCH_SPIN_US"


def pin(environ: Mapping[str, str]) -> None:
    """Pin this process (and what it starts) to the leased core, when the orchestrator named one
    (an image's own variable of that name is not the orchestrator's: ignored)."""
    value = environ.get(CORE, "")
    if CORE not in environ.get(CHOSEN, "").split(",") or not value.isdigit():
        return
    with contextlib.suppress(OSError):  # a core outside this container's set: it floats
        os.sched_setaffinity(0, {int(value)})


def spin_s(environ: Mapping[str, str]) -> float:
    """How long a read polls before it blocks (wire.Reader): the orchestrator's figure, and none
    for a process that may run on one core only."""
    try:
        if len(os.sched_getaffinity(0)) == 1:
            return 0.0
    except OSError:
        pass
    return float(environ.get(SPIN, "0") or 0) / 1e6
