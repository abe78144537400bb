"""Per-project images: what a project's Dockerfile and requirements could carry past the sandbox.

The image's `ENV` must not steer the trusted evaluator to the candidate's files;
an instruction that outlives the build (`VOLUME`, `HEALTHCHECK`, ...) is refused;
no file of the final image keeps a setuid/setgid bit or a file capability; and
the host fetches wheels only, so no requirement line runs a build backend on it.
Each attack failed before its fix. One project image is built per module.
"""

from __future__ import annotations

import difflib
import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import docker
import pytest

from orchestrator.contract.model import DEFAULT_IMAGE, Sandbox
from orchestrator.errors import UserError
from orchestrator.harness import HARNESS_DIR
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox import ContainerSpec, project
from orchestrator.sandbox.docker import CHOSEN_ENV, DockerSandbox
from tests.conftest import BENCH, IMPL, contract_for, git, make_repo

CAP_SETUID_EP = "0100000280000000000000000000000000000000"
"""A `security.capability` value (revision 2, effective): cap_setuid, as `setcap cap_setuid+ep` writes."""
DOCKERFILE = f"""ARG BASE
FROM ${{BASE}}
USER root
RUN mkdir -p /opt/priv && cp /bin/sh /opt/priv/setuid-sh && chmod 4755 /opt/priv/setuid-sh \\
 && cp /bin/sh /opt/priv/setgid-sh && chmod 2755 /opt/priv/setgid-sh && cp /bin/sh /opt/priv/cap-sh \\
 && python3 -c "import os; os.setxattr('/opt/priv/cap-sh', 'security.capability', bytes.fromhex('{CAP_SETUID_EP}'))"
ENV PYTHONPATH=/workspace PATH=/workspace/bin:/usr/local/bin:/usr/bin:/bin PROJECT_SETTING=kept
"""
SITECUSTOMIZE = """import os
if os.getuid() != 10001:  # the evaluator's side: forge its score
    print("score: 0.000001", flush=True)
    os._exit(0)
"""
BENCH_ENV = BENCH + (
    "import os\n"
    "print('# evaluator env', *(os.environ.get(k) for k in "
    "('PROJECT_SETTING', 'CONTRACT_SETTING', 'PYTHONPATH')))\n"
)
HEAD = '"""The implementation the agent may change."""\n'
PLANT_SITECUSTOMIZE = IMPL.replace(
    HEAD,
    HEAD + "import os\n"
    "print('candidate sees PYTHONPATH=' + os.environ.get('PYTHONPATH', ''), flush=True)\n"
    f"open('/workspace/sitecustomize.py', 'w').write({SITECUSTOMIZE!r})\n",
)
PLANT_PYTHON = IMPL.replace(
    HEAD,
    HEAD + "import os\n"
    "os.makedirs('/workspace/bin', exist_ok=True)\n"
    "open('/workspace/bin/python', 'w').write(\"#!/bin/sh\\necho 'score: 0.000002'\\n\")\n"
    "os.chmod('/workspace/bin/python', 0o755)\n",
)
PRIVILEGES = """import errno, os, stat
found = []
for folder, dirs, files in os.walk("/"):
    if folder == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        p = os.path.join(folder, name)
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o6000:
            found.append("mode " + p)
        try:
            os.getxattr(p, "security.capability", follow_symlinks=False)
            found.append("cap " + p)
        except OSError as e:
            assert e.errno in (errno.ENODATA, errno.ENOTSUP), e
print("PRIVILEGED", sorted(found))
"""


@pytest.fixture(scope="module", params=["runc", "runsc"])
def runtime(request, docker_client: docker.DockerClient) -> str:  # type: ignore[no-untyped-def]
    if request.param not in (docker_client.info().get("Runtimes") or {}):
        pytest.skip(f"{request.param} is not registered with this Docker engine")
    return str(request.param)


@pytest.fixture(scope="module")
def image(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project image of DOCKERFILE, built once (a run with the same Dockerfile reuses it)."""
    repo = make_repo(tmp_path_factory.mktemp("image") / "repo", {"sandbox.Dockerfile": DOCKERFILE})
    contract = contract_for(repo, **{"sandbox.dockerfile": "sandbox.Dockerfile"})
    return project.image_for(docker_client, contract.sandbox, repo, say=lambda _m: None)


def test_the_images_environment_never_steers_the_evaluator(
    tmp_path: Path, sandbox, image: str, runtime: str
) -> None:
    """PYTHONPATH=/workspace ran a sitecustomize.py the candidate wrote as the evaluator's user;
    PATH=/workspace/bin ran a `python` it wrote there; both forged a score that was kept."""
    repo = make_repo(tmp_path / "env", {"impl.py": IMPL, "bench.py": BENCH_ENV,
                                        "sandbox.Dockerfile": DOCKERFILE})  # fmt: skip
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "01-plant-a-sitecustomize.patch").write_text(_patch(IMPL, PLANT_SITECUSTOMIZE))
    (patches / "02-plant-a-python.patch").write_text(_patch(IMPL, PLANT_PYTHON))
    contract = contract_for(patches, **{
        "sandbox.dockerfile": "sandbox.Dockerfile", "sandbox.runtime": runtime,
        "sandbox.env": {"CONTRACT_SETTING": "kept"}, "evaluator.paths": ["bench.py"],
        # the candidate's code runs in the first process, the second is the evaluator's own
        "evaluator.command": "python3 -c 'import impl' && python bench.py",
    })  # fmt: skip
    run = start_run(repo, "env", contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    assert run.contract.sandbox.image == image  # the module's image, reused
    run.execute()
    exps = run.ledger.experiments()
    assert exps[0].metric == 10.0 and len(exps) == 3
    for e in exps[1:]:
        assert e.status != "keep" and e.metric == 10.0, (e.description, e.metric, e.reason)
    said = (run.ledger.exp_dir(0) / "output.log").read_text()
    assert "# evaluator env kept kept None" in said, said  # the harmless and the contract's kept
    candidate = (run.ledger.exp_dir(1) / "candidate.log").read_text()
    assert "candidate sees PYTHONPATH=/workspace" in candidate  # the candidate's side keeps it


def _patch(old: str, new: str, path: str = "impl.py") -> str:
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return f"diff --git a/{path} b/{path}\n" + "".join(diff)


def _environment() -> ModuleType:
    path = HARNESS_DIR / "autoresearch_harness" / "environment.py"
    spec = importlib.util.spec_from_file_location("harness_environment", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_of_the_images_environment_the_trusted_side_keeps() -> None:
    env = _environment()
    image = {
        "PYTHONPATH": "/workspace", "PYTHONSTARTUP": "/workspace/s.py", "PYTHONHOME": "/workspace",
        "PYTHONUSERBASE": "/workspace", "PYTHONINSPECT": "1", "PYTHONBREAKPOINT": "x.y",
        "PYTHONEXECUTABLE": "/workspace/p", "PYTHONPYCACHEPREFIX": "/tmp/c", "PYTHONWARNINGS": "error",
        "PYTHONPLATLIBDIR": "../../workspace", "LD_PRELOAD": "/workspace/x.so",
        "LD_LIBRARY_PATH": "/opt/lib", "LD_AUDIT": "/tmp/a.so", "BASH_ENV": "/opt/env.sh",
        "NODE_OPTIONS": "--require /opt/x.js", "HF_HOME": "/tmp/hf", "TORCH_HOME": "/opt/../workspace/t",
        "AUTORESEARCH_TRUSTED_ROOT": "/workspace", "PATH": "/workspace/bin:.:/usr/bin::/tmp/x:/bin",
        "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "4", "CUDA_HOME": "/usr/local/cuda",
    }  # fmt: skip
    chosen = {"PYTHONPATH": "/trusted/src", "AUTORESEARCH_TRUSTED_ROOT": "/trusted", "X": "/tmp/y"}
    kept = env.trusted({**image, **chosen, env.CHOSEN: ",".join(chosen)})
    assert {k: v for k, v in kept.items() if k != env.CHOSEN} == {
        **chosen, "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "4", "CUDA_HOME": "/usr/local/cuda",
    }  # fmt: skip
    assert env.trusted({"PATH": "/workspace/bin"})["PATH"] == env.DEFAULT_PATH
    assert env.CHOSEN == CHOSEN_ENV  # the name the sandbox lists them under


def test_an_images_own_healthcheck_never_runs(
    tmp_path: Path, sandbox: DockerSandbox, docker_client: docker.DockerClient
) -> None:
    """A `sandbox.image` built elsewhere: its HEALTHCHECK would run as the evaluator's user."""
    text = f"FROM {DEFAULT_IMAGE}\nHEALTHCHECK --interval=1s CMD cd /workspace && python3 -m x\n"
    tag = f"autoresearch-test/healthcheck:{tmp_path.name.lower()}"
    docker_client.images.build(fileobj=io.BytesIO(text.encode()), tag=tag, rm=True, pull=False)
    try:
        spec = ContainerSpec(workspace=tmp_path, command="true", budget_s=10,
                             limits=Sandbox(image=tag), env={"A": "1"})  # fmt: skip
        container = sandbox.create(spec)
        try:
            assert container.attrs["Config"]["Healthcheck"]["Test"] == ["NONE"]
        finally:
            container.remove(force=True)
    finally:
        docker_client.images.remove(tag, force=True)


def test_no_file_of_a_project_image_keeps_a_privilege(
    image: str, docker_client: docker.DockerClient
) -> None:
    """A setuid or setgid copy, or a file capability (`setcap`), anywhere in the image."""
    out = docker_client.containers.run(image, ["python3", "-c", PRIVILEGES], user="0:0",
                                       network_mode="none", remove=True)  # fmt: skip
    assert b"PRIVILEGED []" in out, out.decode()[-2000:]


REFUSED = {
    "VOLUME": "RUN mkdir /data && cp /bin/sh /data/rootsh && chmod 4755 /data/rootsh\nVOLUME /data",
    "ONBUILD": "ONBUILD RUN chmod 4755 /bin/sh",
    "HEALTHCHECK": "HEALTHCHECK --interval=1s CMD cd /workspace && python3 -c 'import impl'",
    "ENTRYPOINT": 'ENTRYPOINT ["/bin/sh", "-c", "cd /workspace && python3 -m prep; exec \\"$@\\"", "--"]',
    "SHELL": 'SHELL ["/bin/bash", "-c"]',
    "STOPSIGNAL": "STOPSIGNAL SIGUSR1",
}


@pytest.mark.parametrize("instruction", sorted(REFUSED))
def test_an_instruction_that_outlives_the_build_is_refused(
    instruction: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    text = f"ARG BASE\nFROM ${{BASE}}\nUSER root\n{REFUSED[instruction]}\n"
    repo = make_repo(tmp_path / "repo", {"sandbox.Dockerfile": text})
    contract = contract_for(repo, **{"sandbox.dockerfile": "sandbox.Dockerfile"})
    with pytest.raises(UserError) as refused:
        project.image_for(docker_client, contract.sandbox, repo, say=lambda _m: None)
    message = refused.value.format_message()
    assert f"sandbox.dockerfile sandbox.Dockerfile: {instruction} is not allowed" in message
    assert "\n" not in message


SETUP = """import pathlib
pathlib.Path({marker!r}).write_text("a build backend ran on the host")
from setuptools import setup
setup(name="evil", version="1.0")
"""


def _evil(folder: Path, marker: Path) -> Path:
    """A local project whose build writes `marker` on whatever host builds it."""
    folder.mkdir(parents=True)
    (folder / "setup.py").write_text(SETUP.format(marker=str(marker)))
    return folder


def _sdist(repo: Path, marker: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = SETUP.format(marker=str(marker)).encode()
        info = tarfile.TarInfo("evil-1.0/setup.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (repo / "evil-1.0.tar.gz").write_bytes(buf.getvalue())


def _carrier(repo: Path, evil: Path) -> str:
    """A wheel whose own metadata depends on a local project (no line shows it)."""
    dist = "carrier-1.0.dist-info"
    name = "carrier-1.0-py3-none-any.whl"
    with zipfile.ZipFile(repo / name, "w") as z:
        z.writestr("carrier/__init__.py", "")
        z.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: carrier\nVersion: 1.0\n"
                   f"Requires-Dist: evil @ {evil.as_uri()}\n")  # fmt: skip
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                   "Tag: py3-none-any\n")  # fmt: skip
        z.writestr(f"{dist}/RECORD", "")
    return f"./{name}"


LINES = {
    "a local project": (lambda repo, evil: "./evil", "is not a wheel"),
    "an editable one": (lambda repo, evil: "-e ./evil", "is an option line"),
    "a direct reference": (lambda repo, evil: f"evil @ {evil.as_uri()}", "is not a wheel"),
    "version control": (lambda repo, evil: f"git+{evil.as_uri()}#egg=evil", "version-control URL"),
    "an sdist by bare name": (lambda repo, evil: "evil-1.0.tar.gz", "is not a wheel"),
    "no-binary": (lambda repo, evil: "--no-binary=:all:\nsix", "is an option line"),
    "another file": (lambda repo, evil: "-r more.txt", "is an option line"),
    "another index": (lambda repo, evil: "--index-url http://127.0.0.1:9/simple", "option line"),
    "an option on a line": (lambda repo, evil: "six --config-settings=x=y", "other than --hash"),
    "a continued option": (lambda repo, evil: "six \\\n  --no-binary=six", "other than --hash"),
    "a variable": (lambda repo, evil: "${EVIL_PATH}", "environment variable"),
    "a wheel's own dependency": (_carrier, "would be built or cloned on this host"),
}


@pytest.mark.parametrize("case", sorted(LINES))
def test_the_host_fetches_wheels_only(
    case: str, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    marker = tmp_path / "BUILT"
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL})
    evil = _evil(repo / "evil", marker)
    _sdist(repo, marker)
    (repo / "more.txt").write_text("./evil\n")
    write, expected = LINES[case]
    line = write(repo, evil)
    (repo / "requirements.txt").write_text(f"# the project's dependencies\n{line}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "dependencies")
    contract = contract_for(repo, **{"sandbox.requirements": "requirements.txt"})
    with pytest.raises(UserError) as refused:
        project.image_for(docker_client, contract.sandbox, repo, say=lambda _m: None)
    message = refused.value.format_message()
    assert expected in message and "\n" not in message, message
    if case != "a wheel's own dependency":
        assert "requirements.txt:2: " in message  # the line, by its number
    assert not marker.exists()  # nothing was built on this host


def test_a_requirements_check_reads_lines_as_pip_does(tmp_path: Path) -> None:
    from orchestrator.sandbox.requirements import logical_lines

    text = "a==1 # pinned\n# note \\\nb \\\n  >=2\n\n  c#frag\nd; python_version>'3'"
    assert logical_lines(text) == [(1, "a==1"), (3, "b   >=2"), (6, "c#frag"),
                                   (7, "d; python_version>'3'")]  # fmt: skip


def test_an_apt_name_cannot_carry_a_command(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    repo = make_repo(tmp_path / "repo", {"impl.py": IMPL})
    contract = contract_for(repo, **{"sandbox.apt": ["curl", "jq && chmod 4755 /bin/sh"]})
    with pytest.raises(
        UserError, match=r"sandbox\.apt: 'jq && chmod 4755 /bin/sh' is not a Debian"
    ):
        project.image_for(docker_client, contract.sandbox, repo, say=lambda _m: None)
