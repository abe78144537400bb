"""What runs on a node of a Ray cluster: one attempt, the reaper, the node's facts.

Ray imports this module on the node (its functions are the tasks' bodies). The
run's trusted files arrive once per run as a bundle and are unpacked once per
node into a private per-user folder that nobody else may plant files in.
"""

from __future__ import annotations

import importlib
import os
import socket
import stat
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import ray

from orchestrator.errors import InfraError
from orchestrator.executors.attempt import ATTEMPT_LABEL, Attempt, Trusted, perform
from orchestrator.executors.workdirs import Workdirs, sweep
from orchestrator.folders import remove_tree, unpack
from orchestrator.sandbox import ContainerResult, SandboxBackend

NODE_LABEL = "autoresearch.node"
RUN_LABEL = "autoresearch.run"

_sandboxes: dict[str, SandboxBackend] = {}
_sandboxes_lock = threading.Lock()


def _node_sandbox(factory: str) -> SandboxBackend:
    """This worker process's sandbox (one engine connection per process)."""
    with _sandboxes_lock:
        if factory not in _sandboxes:
            module, _, name = factory.partition(":")
            _sandboxes[factory] = getattr(importlib.import_module(module), name)()
        return _sandboxes[factory]


def _node_root(tag: str) -> Path:
    """This user's private folder on the node: nobody else may plant an evaluator in it."""
    base = Path(tempfile.gettempdir()) / f"autoresearch-ray-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise InfraError(
            f"{base} on {socket.gethostname()} is not a private folder of uid "
            f"{os.getuid()} — remove it; attempts will not run from it"
        )
    return base / tag


def _trusted_on_node(tag: str, digest: str, bundle: bytes) -> Trusted:
    """The run's trusted files, unpacked once per node (atomically: slots may race)."""
    root = _node_root(tag) / f"trusted-{digest}"
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root.parent))
        unpack(bundle, scratch)
        for d in ("evaluator", "scorer", "data"):
            (scratch / d).mkdir(exist_ok=True)
        try:
            scratch.rename(root)
        except OSError:  # another slot won the race
            remove_tree(scratch)
    return Trusted(root / "evaluator", root / "scorer", root / "data")


def _node_name() -> str:
    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"


def _leftover(folder: Path, e: OSError) -> None:
    print(f"autoresearch: could not remove {folder}: {e}", file=sys.stderr)  # the node's worker log


_node_workdirs: dict[str, Workdirs] = {}


def _workdirs(tag: str) -> Workdirs:
    """This worker's folders for run `tag`: removed behind, never made ahead (no spare outlives a night)."""
    with _sandboxes_lock:
        if tag not in _node_workdirs:
            _node_workdirs[tag] = Workdirs(_node_root(tag) / "sandbox", _leftover, ahead=False)
        return _node_workdirs[tag]


def run_on_node(
    attempt: Attempt, tag: str, bundle: bytes, digest: str, factory: str
) -> ContainerResult:
    """The Ray task: one attempt in this node's sandbox, with the GPUs Ray assigned to it."""
    gpus = tuple(str(g) for g in ray.get_gpu_ids())
    node = _node_name()
    attempt = replace(attempt, gpus=gpus, labels={**attempt.labels, NODE_LABEL: node})
    trusted = _trusted_on_node(tag, digest, bundle)
    result = perform(attempt, _node_sandbox(factory), _workdirs(tag), trusted)
    return replace(result, node=node, gpus=gpus)


def reap_on_node(
    tag: str, nonce: str, ended: frozenset[str], everything: bool, factory: str
) -> int:
    """Remove this node's containers and work folders of run `tag` that no live attempt of this
    driver owns, and any run's whose maker died; how many containers."""

    def stale_attempt(attempt: str) -> bool:
        return everything or not attempt.startswith(f"{nonce}-") or attempt in ended

    def stale(labels: dict[str, str]) -> bool:
        return labels.get(RUN_LABEL) == tag and stale_attempt(labels.get(ATTEMPT_LABEL, ""))

    removed = _node_sandbox(factory).reap(stale=stale)
    for box in _node_root(tag).parent.glob("*/sandbox"):
        sweep(box, stale_attempt if box.parent.name == tag else lambda _attempt: False)
    return removed


def facts_on_node(image: str, factory: str) -> tuple[str | None, str | None]:
    try:
        sandbox = _node_sandbox(factory)
    except Exception as e:  # any failure to reach the engine is the answer here
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}", None
    try:
        return None, sandbox.image_id(image)
    except InfraError:
        return None, None
