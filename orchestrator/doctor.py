"""`autoresearch doctor`: what is ready and what is missing, one line each.

Required checks fail the command (exit 1); optional ones only inform.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.contract.model import DEFAULT_IMAGE, FORGEABLE, Contract
from orchestrator.contract.model import Sandbox as SandboxLimits
from orchestrator.errors import EngineUnavailable
from orchestrator.sandbox import gvisor

if TYPE_CHECKING:
    from orchestrator.executors.config import LocalExecutorConfig, RayExecutorConfig


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "--  ")
        return f"{mark} {self.name}: {self.detail}"


def _gpus() -> Check:
    from orchestrator.gpus import NvmlInventory

    inv = NvmlInventory()
    gpus = inv.snapshot()
    inv.close()
    if not gpus:
        return Check(
            "gpus",
            False,
            f"0 GPUs — no NVML library or driver ({inv.error}); CPU slots only",
            required=False,
        )
    names = ", ".join(f"{g.index}: {g.name}" for g in gpus)
    return Check("gpus", True, f"{len(gpus)} via NVML ({names})", required=False)


def local_checks(cfg: LocalExecutorConfig, image: str) -> list[Check]:
    """`executor.kind = "local"` (its `checker`): this machine's checks."""
    return checks(image)


def checks(image: str = DEFAULT_IMAGE) -> list[Check]:
    """This machine: Python, git, the engine, the image, gVisor, GPUs, the API key."""
    out = [
        Check("python", sys.version_info >= (3, 11), sys.version.split()[0] + " (3.11+ needed)"),
        Check(
            "git", shutil.which("git") is not None, shutil.which("git") or "missing — install git"
        ),
    ]
    from orchestrator.sandbox.engine import connect

    try:
        client = connect(timeout=10)
    except EngineUnavailable as e:
        out.append(Check("docker engine", False, e.message))
        out.append(_gpus())
        return out
    info = client.info()
    out.append(
        Check("docker engine", True, f"{info.get('ServerVersion')} (API {client.api.api_version})")
    )
    init = bool(info.get("InitBinary"))
    out.append(
        Check("init process", init, info.get("InitBinary") or "no docker-init/tini — install tini")
    )
    cg = info.get("CgroupVersion", "?")
    readable = os.path.isdir("/sys/fs/cgroup")
    out.append(
        Check(
            "accounting",
            readable,
            f"cgroup v{cg}, {info.get('CgroupDriver')} driver"
            + ("" if readable else " — /sys/fs/cgroup not readable: no peak memory/CPU figures"),
            required=False,
        )
    )
    out.append(_image(client, image))
    out.append(_agent_image(client))
    out.append(Check("gvisor", *gvisor.describe(info.get("Runtimes", {})), required=False))
    out.append(_gpus())
    key = bool(os.environ.get("ANTHROPIC_API_KEY"))
    out.append(
        Check(
            "anthropic key",
            key,
            "ANTHROPIC_API_KEY set" if key else "not set (replay agent works offline)",
            required=False,
        )
    )
    return out


def project_image_check(contract: Contract, root: Path) -> Check | None:
    """Which image the contract's runs use, when it names dependencies, and whether it is current."""
    from orchestrator.sandbox import project
    from orchestrator.sandbox.engine import connect

    s = contract.sandbox
    if not project.wanted(s):
        return None
    try:
        client = connect(timeout=10)
        base = str(client.images.get(s.image).id)
    except Exception as e:
        return Check(
            "project image", False, f"cannot tell ({type(e).__name__}) — build {s.image} first"
        )
    digest = project.inputs(s, root, base)
    tag = f"autoresearch/project-{digest}:latest"
    try:
        client.images.get(tag)
        return Check("project image", True, f"{tag} is current")
    except Exception:
        return Check(
            "project image",
            True,
            f"{tag} is built on the next run (its inputs changed or it is new)",
        )


_FIND = (
    "import importlib.util, json, sys\n"
    "out = {}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        spec = importlib.util.find_spec(name)\n"
    "    except Exception:\n"
    "        spec = None\n"
    "    if spec is not None:\n"
    "        out[name] = spec.origin or ', '.join(spec.submodule_search_locations or [])\n"
    "print(json.dumps(out))\n"
)


def module_checks(contract: Contract, root: Path) -> list[Check]:
    """What harness mode will make of the implementation's module names: one named like the
    standard library's never loads for that name; another copy installed in the image is
    never tested in the candidate's stead. Both inform (a run still starts)."""
    import subprocess

    from orchestrator.contract.paths import matches_any
    from orchestrator.executors.isolation import stdlib_named

    listed = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)  # fmt: skip
    files = [f for f in listed.stdout.splitlines() if matches_any(f, contract.implementation.paths)]
    named = [] if contract.forgeable else stdlib_named(files)
    out = [Check("module names", False, "; ".join(named), required=False)] if named else []
    return out + [c for c in [_installed_copies(contract, root, files)] if c is not None]


def _installed_copies(contract: Contract, root: Path, files: list[str]) -> Check | None:
    """Whether the runs' image holds another copy of a module of the implementation (an installed
    package of the same name): the harness never tests it in the candidate's stead, but say so."""
    from orchestrator.sandbox import project
    from orchestrator.sandbox.engine import connect

    tops = sorted(
        {Path(f).stem if Path(f).name != "__init__.py" else Path(f).parent.name
         for f in files if f.endswith(".py")} - set(sys.stdlib_module_names) - {""}
    )  # fmt: skip
    if not tops:
        return None
    image = contract.sandbox.image
    try:
        client = connect(timeout=10)
        if project.wanted(contract.sandbox):
            digest = project.inputs(contract.sandbox, root, str(client.images.get(image).id))
            image = f"autoresearch/project-{digest}:latest"
        out = client.containers.run(
            image, ["python3", "-I", "-c", _FIND, *tops], remove=True, network_disabled=True,
            user=contract.sandbox.user, working_dir="/tmp",
        )  # fmt: skip
        found = json.loads(out.decode().strip().splitlines()[-1])
    except Exception as e:
        why = f"cannot tell ({type(e).__name__}: {str(e)[:80]}) — is {image} built?"
        return Check("installed copies", False, why, required=False)
    if not found:
        return Check("installed copies", True, f"none of {', '.join(tops)} is installed in {image}")
    where = "; ".join(f"{name} at {origin}" for name, origin in found.items())
    return Check(
        "installed copies",
        True,
        f"{image} also holds {where} — runs import the implementation's (its folder comes first) "
        "and refuse the other copy, naming both, wherever it would be imported instead",
        required=False,
    )


def isolation_check(contract: Contract) -> Check:
    """Whether a contract's scores are out of its candidates' reach (informs; never fails)."""
    if contract.forgeable:
        return Check("isolation", False, FORGEABLE.removeprefix("warning: "), required=False)
    return Check(
        "isolation",
        True,
        "harness: the evaluator is trusted; the candidate runs in a worker of its own",
    )


def gateway_checks(contract: Contract, environ: dict[str, str] | None = None) -> list[Check]:
    """The contract's services: the host variables the gateway adds, and runsc's socket access."""
    from orchestrator.gateway.server import missing

    services = contract.sandbox.services
    if not services:
        return []
    gone = missing(services, dict(os.environ) if environ is None else environ)
    names = ", ".join(f"{s.name} → {s.upstream}" for s in services)
    out = [
        Check(
            "gateway",
            not gone,
            f"{names}; keys added on the host"
            if not gone
            else f"{gone[0]} is not set — export it before the run",
        )
    ]
    if contract.sandbox.runtime == "runsc":
        from orchestrator.sandbox.engine import connect

        try:
            runsc = (connect(timeout=10).info().get("Runtimes") or {}).get("runsc") or {}
        except EngineUnavailable:
            return out
        ok = any(
            a.startswith("--host-uds=") and a != "--host-uds=none"
            for a in runsc.get("runtimeArgs", [])
        )
        out.append(
            Check(
                "gateway under runsc",
                ok,
                "runsc may reach the gateway's sockets (--host-uds)"
                if ok
                else "runsc lacks --host-uds=open: the services' sockets are unreachable — "
                "run scripts/ensure-runsc (make engine)",
            )
        )
    return out


def _image(client: Any, image: str) -> Check:
    from orchestrator.sandbox import images

    try:
        img = client.images.get(image)
    except Exception:
        return Check("image", False, f"{image} not built — run `autoresearch images build`")
    recipe = next((name for name, tag in images.IMAGE_TAGS.items() if tag == image), None)
    stale = recipe is not None and img.labels.get(images.INPUTS_LABEL) != images.inputs_hash(
        images.IMAGES_DIR / recipe
    )
    detail = f"{image} ({img.short_id})" + (
        " — stale: run `autoresearch images build`" if stale else ""
    )
    return Check("image", True, detail)


def _agent_image(client: Any) -> Check:
    """The command agent's image: optional, built on first use of a containerized CLI."""
    from orchestrator.sandbox import images

    tag = images.IMAGE_TAGS["agent"]
    try:
        img = client.images.get(tag)
    except Exception:  # docker.errors.ImageNotFound, without importing docker here
        npm = "" if shutil.which("npm") else "; its build needs npm on this host"
        return Check(
            "agent image",
            False,
            f"{tag} not built — built on the first command agent's proposal, or now with "
            f"`make agent-image` (`autoresearch images build agent`){npm}",
            required=False,
        )
    stale = img.labels.get(images.INPUTS_LABEL) != images.inputs_hash(images.IMAGES_DIR / "agent")
    detail = f"{tag} ({img.short_id}), for agent.kind = 'command'" + (
        " — stale: run `autoresearch images build agent`" if stale else ""
    )
    return Check("agent image", True, detail, required=False)


def _profile(limits: SandboxLimits) -> str | None:
    """The seccomp profile a run of these limits uses (as `runs` snapshots it)."""
    from orchestrator.sandbox.seccomp import default_profile

    if limits.seccomp is not None:
        return limits.seccomp.read_text() if limits.seccomp.is_file() else None
    return default_profile()


def audit_sandbox(echo: Callable[[str], None], limits: SandboxLimits | None = None) -> bool:
    """Create (never start) the sandbox container a run would use and audit it (CIS items)."""
    import tempfile
    from pathlib import Path

    from orchestrator.sandbox import ContainerSpec
    from orchestrator.sandbox.audit import audit
    from orchestrator.sandbox.docker import DockerSandbox

    limits = limits or SandboxLimits()
    sandbox = DockerSandbox()
    with tempfile.TemporaryDirectory(prefix="autoresearch-audit-") as tmp:
        container = sandbox.create(
            ContainerSpec(
                workspace=Path(tmp),
                command="true",
                budget_s=1,
                limits=limits,
                seccomp=_profile(limits),
            )
        )
        try:
            items = audit(container.attrs)
        finally:
            container.remove(force=True)
    echo(
        f"sandbox container ({limits.image}, runtime {limits.runtime}) against the CIS Docker Benchmark:"
    )
    for item in items:
        echo(item.line())
    return all(i.ok for i in items)


def ray_checks(cfg: RayExecutorConfig, image: str) -> list[Check]:
    """`executor.kind = "ray"` (its `checker`): the cluster's checks."""
    return cluster_checks(cfg.address, image, cfg.node_sandbox)


def cluster_checks(address: str | None, image: str, node_sandbox: str) -> list[Check]:
    """`doctor --executor ray`: each node with sandbox slots — slots, GPUs, engine and image."""
    from orchestrator.errors import UserError
    from orchestrator.executors.config import START_HINT, probe

    try:
        probe(address)  # before Ray is imported: a wrong address says so in seconds
        from orchestrator.executors import ray as rx

        rx.connect(address)
    except ImportError as e:
        why = f"not installed ({e}) — pip install 'autoresearch-orchestrator[ray]'"
        return [Check("ray", False, why)]
    except UserError as e:
        return [Check("ray", False, e.message)]
    nodes = rx.node_facts(image, node_sandbox)
    out = [
        Check(
            "ray",
            bool(nodes),
            f"{len(nodes)} node(s) with sandbox slots"
            + ("" if nodes else f" — start nodes with `{START_HINT}`"),
        )
    ]
    for f in nodes:
        ready = f.engine is None and f.image_id is not None
        why = f.engine or (
            "" if f.image_id else f"image {image} missing — run `autoresearch images build` there"
        )
        detail = f"{f.slots} slot(s), {f.gpus} GPU(s), " + (
            f"engine and {image} ready ({(f.image_id or '')[:19]})" if ready else why
        )
        out.append(Check(f"node {f.name}", ready, detail))
    ids = {f.image_id for f in nodes if f.image_id}
    if len(ids) > 1:
        out.append(
            Check(
                "image",
                False,
                f"the nodes hold {len(ids)} different builds of {image} — rebuild it on each",
            )
        )
    return out
