"""Attempts on the nodes of a Ray cluster (`pip install autoresearch-orchestrator[ray]`).

Each attempt is one Ray task that needs one sandbox slot (the custom resource
`autoresearch_slot` every node advertises) and, when the contract asks for GPUs,
`num_gpus`. The task runs on its node exactly what the local executor runs here
(`attempt.perform`, the same hardened sandbox), with the GPUs Ray assigned to it
passed to the container explicitly. The candidate's tree travels in the task;
the trusted files (evaluator, scorer, the repository's data mounts) travel once
per run through the object store and are unpacked once per node; absolute data
paths must exist on every node.

Ray never retries on its own (`max_retries=0`): a lost node becomes an
InfraError the driver's runner records once and reruns wherever a slot is free.
Every container carries its run, experiment and attempt; a reaper task pinned to
each node removes the containers of attempts the driver no longer waits for
(and, like the local sandbox, those whose owner process died).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import logging
import os
import tarfile
import threading
import uuid
from dataclasses import dataclass, replace
from typing import Any

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.contract.model import Contract
from orchestrator.errors import InfraError, UserError
from orchestrator.executors import RunFolder
from orchestrator.executors.attempt import ATTEMPT_LABEL, Attempt
from orchestrator.executors.config import SLOT, START_HINT, RayExecutorConfig, probe
from orchestrator.executors.ray_node import facts_on_node, reap_on_node, run_on_node
from orchestrator.executors.workdirs import Leftover
from orchestrator.sandbox import ContainerResult, SandboxBackend


def connect(address: str | None) -> None:
    """Join the cluster at `address` (None: RAY_ADDRESS or the one on this host), or one clear line."""
    if ray.is_initialized():
        return
    where = address or os.environ.get("RAY_ADDRESS") or "auto"
    probe(address)  # fail in seconds, not after Ray's retries
    try:
        ray.init(address=where, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"no Ray cluster answers at {where} ({first[:160]}) — start one (`{START_HINT}` on the head, "
            f"`ray start --address HEAD:6379 --resources ...` on each node) or fix --ray-address"
        ) from None


_run_task = ray.remote(run_on_node)
_reap_task = ray.remote(reap_on_node)
_facts_task = ray.remote(facts_on_node)


def _on(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def _nodes() -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return nodes


def slot_nodes() -> list[dict[str, Any]]:
    """The alive nodes that advertise sandbox slots."""
    return [n for n in _nodes() if n.get("Alive") and n.get("Resources", {}).get(SLOT, 0) >= 1]


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    name: str
    slots: int
    gpus: int
    engine: str | None
    """None when the node's sandbox answers; else why not."""
    image_id: str | None
    """The sandbox image's id there; None when it is missing."""


def node_facts(image: str, factory: str, timeout: float = 60) -> list[NodeFacts]:
    """Slots, GPUs, engine and image of every node with sandbox slots (one small task on each)."""
    nodes = slot_nodes()
    refs = [
        _facts_task.options(num_cpus=0, max_retries=0, scheduling_strategy=_on(n["NodeID"])).remote(
            image, factory
        )
        for n in nodes
    ]
    out = []
    for n, ref in zip(nodes, refs, strict=True):
        try:
            engine, image_id = ray.get(ref, timeout=timeout)
        except ray.exceptions.RayError as e:
            engine, image_id = f"no answer from the node ({type(e).__name__})", None
        res = n["Resources"]
        host = n.get("NodeManagerHostname") or n.get("NodeManagerAddress", "?")
        out.append(
            NodeFacts(
                n["NodeID"],
                f"{host}/{n['NodeID'][:8]}",
                int(res.get(SLOT, 0)),
                int(res.get("GPU", 0)),
                engine,
                image_id,
            )
        )
    return out


def capacity(slots: int, gpus: int, per_experiment: int) -> int:
    """How many experiments a node runs at once."""
    return min(slots, gpus // per_experiment) if per_experiment else slots


# -- on the driver --------------------------------------------------------
def build(
    cfg: RayExecutorConfig, folder: RunFolder, leftover: Leftover, sandbox: SandboxBackend | None
) -> RayExecutor:
    """`executor.kind = "ray"` (its `builder`): join the cluster (each node brings its own
    sandbox; `sandbox` is not used).

    Raises UserError when no cluster answers.
    """
    return RayExecutor(cfg, folder)


class RayExecutor:
    """Executor over a Ray cluster; the driver (this process) must be able to join it."""

    assigns_gpus = True

    def __init__(self, config: RayExecutorConfig, folder: RunFolder) -> None:
        connect(config.address)
        self.config = config
        self.folder = folder
        self._nonce = uuid.uuid4().hex[:8]
        """This driver's attempts are `<nonce>-<n>`; anything else of this run is a previous driver's."""
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._live: dict[str, ray.ObjectRef[Any]] = {}
        self._ended: set[str] = set()
        """Attempts whose task was lost or cancelled: their containers may outlive them."""
        self._cancelled = False
        """Set by `cancel()` until `reopen()`: no attempt is sent meanwhile."""
        self._bundle: tuple[ray.ObjectRef[Any], str] | None = None

    # the trusted files travel once per run
    def _trusted_bundle(self, c: Contract) -> tuple[ray.ObjectRef[Any], str]:
        with self._lock:
            if self._bundle is None:
                data = _bundle(self.folder, c)
                self._bundle = (ray.put(data), hashlib.sha256(data).hexdigest()[:16])
            return self._bundle

    def run(self, attempt: Attempt) -> ContainerResult:
        c = attempt.contract
        aid = f"{self._nonce}-{next(self._seq)}"
        attempt = replace(attempt, labels={**attempt.labels, ATTEMPT_LABEL: aid})
        with self._lock:
            if self._cancelled:
                raise InfraError("the executor was cancelled: no new attempt until it is reopened")
        try:
            bundle, digest = self._trusted_bundle(c)
            # max_retries=0: Ray's own retry would run the experiment twice, the first container
            # left running; a lost attempt comes back as an InfraError and the runner decides.
            ref = _run_task.options(
                resources={SLOT: 1}, num_gpus=c.sandbox.gpus, num_cpus=0, max_retries=0
            ).remote(attempt, self.folder.tag, bundle, digest, self.config.node_sandbox)
            with self._lock:
                self._live[aid] = ref
                missed = self._cancelled  # cancelled while it was being sent: its cancel missed it
                if missed:
                    self._ended.add(aid)
            if missed:
                self._end([ref])
                raise InfraError(
                    f"experiment {attempt.experiment} was cancelled while its Ray task "
                    "was being sent"
                )
            result: ContainerResult = ray.get(ref)
            return result
        except ray.exceptions.RayTaskError as e:  # our code raised on the node
            cause = e.cause if isinstance(e.cause, BaseException) else e
            where = f" on {e.ip}" if getattr(e, "ip", None) else ""
            if isinstance(cause, InfraError):
                raise InfraError(f"{cause}{where}") from None
            # our own code failed there: retrying would fail the same way, all night
            raise RuntimeError(
                f"autoresearch failed on a Ray node{where}: {type(cause).__name__}: {cause}"
            ) from None
        except ray.exceptions.RayError as e:  # the node, its worker or the task is gone
            self._lose(aid)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise InfraError(
                f"lost the Ray task of experiment {attempt.experiment} "
                f"({type(e).__name__}: {first[:200]})"
            ) from None
        except SystemExit as e:  # Ray's core worker ends the "process" when the cluster is gone
            raise InfraError(
                f"lost the Ray cluster while experiment {attempt.experiment} ran "
                f"(its connection ended: {e.code})"
            ) from None
        finally:
            with self._lock:
                self._live.pop(aid, None)

    def _lose(self, aid: str) -> None:
        """Forget a lost attempt and remove its container wherever a node can still see it."""
        with self._lock:
            self._ended.add(aid)
        with contextlib.suppress(ray.exceptions.RayError, SystemExit):
            self.reap()

    def slots(self, contract: Contract) -> int | None:
        per = contract.sandbox.gpus
        total = sum(
            capacity(int(n["Resources"].get(SLOT, 0)), int(n["Resources"].get("GPU", 0)), per)
            for n in slot_nodes()
        )
        return max(1, total)

    def check(self, contract: Contract) -> None:
        if contract.sandbox.services:  # a node's gateway would need the keys on every node
            raise UserError(
                "sandbox.services run only with the local executor: set executor.kind = 'local' "
                "(the Ray executor would need the services' keys on every node)"
            )
        image, per = contract.sandbox.image, contract.sandbox.gpus
        facts = node_facts(image, self.config.node_sandbox)
        if not facts:
            raise UserError(
                f"no node of the Ray cluster advertises sandbox slots — start nodes with "
                f"`{START_HINT}` (or `ray start --address ... --resources ...`)"
            )
        bad = [f"{f.name}: {f.engine}" for f in facts if f.engine is not None]
        bad += [
            f"{f.name}: image {image} missing"
            for f in facts
            if f.engine is None and f.image_id is None
        ]
        if bad:
            raise UserError(
                f"not every Ray node can run experiments ({'; '.join(bad)}) — on each, start "
                "Docker and run `autoresearch images build`; see `autoresearch doctor --executor ray`"
            )
        if not any(capacity(f.slots, f.gpus, per) for f in facts):
            raise UserError(
                f"sandbox.gpus = {per} but no Ray node with sandbox slots has that many GPUs "
                f"({', '.join(f'{f.name}: {f.gpus}' for f in facts)}) — lower sandbox.gpus or add a node"
            )

    def image_id(self, image: str) -> str:
        """The image's id on the nodes; the sorted ids, comma-separated, where nodes built their own."""
        facts = node_facts(image, self.config.node_sandbox)
        missing = [f.name for f in facts if f.image_id is None]
        if not facts or missing:
            raise InfraError(f"image {image} is missing on {', '.join(missing) or 'every node'}")
        return ",".join(sorted({str(f.image_id) for f in facts}))

    def close(self) -> None:
        return None

    def cancel(self) -> int:
        """End every running attempt's task (and any sent before `reopen()`), then remove
        their containers on their nodes: a force-cancel kills the worker, not its container."""
        with self._lock:
            self._cancelled = True
            live = dict(self._live)
            self._ended.update(live)
        self._end(list(live.values()))
        return len(live)

    def _end(self, refs: list[ray.ObjectRef[Any]]) -> None:
        """Force-cancel ended attempts' tasks, then remove their containers. A force-cancel kills
        the worker, not its container, and Ray can miss the cancel of a task it is still
        dispatching: the reap comes after the tasks end, or after 10 s, whichever is first."""
        with contextlib.suppress(ray.exceptions.RayError, SystemExit):
            for ref in refs:
                ray.cancel(ref, force=True)
            if refs:
                ray.wait(refs, num_returns=len(refs), timeout=10)
            self.reap()

    def reopen(self) -> None:
        with self._lock:
            self._cancelled = False

    def reap(self, *, everything: bool = False, timeout: float = 15) -> int:
        """Run the reaper on every alive node: containers of this run no live attempt owns."""
        with self._lock:
            ended = frozenset(self._ended)
        nodes = [n for n in _nodes() if n.get("Alive")]
        refs = [
            _reap_task.options(
                num_cpus=0, max_retries=0, scheduling_strategy=_on(n["NodeID"])
            ).remote(self.folder.tag, self._nonce, ended, everything, self.config.node_sandbox)
            for n in nodes
        ]
        removed = 0
        for ref in refs:
            with contextlib.suppress(ray.exceptions.RayError, SystemExit):
                removed += int(ray.get(ref, timeout=timeout))
        return removed


def _bundle(folder: RunFolder, c: Contract) -> bytes:
    """A tar of the run's trusted files: evaluator/, scorer/ and data/ (the repository's data mounts)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for sub in ("evaluator", "scorer"):
            if (folder.path / sub).exists():
                tar.add(folder.path / sub, arcname=sub)
        mounts = [*c.evaluator.data, *(c.score.data if c.score else [])]
        for m in mounts:
            if not m.source.is_absolute():
                tar.add(folder.data_root / m.source, arcname=f"data/{m.source.as_posix()}")
    return buf.getvalue()
