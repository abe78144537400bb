"""Your own repository: the orchestrator installed from its wheel (not this checkout), a
project's dependencies in its sandbox image, a user Dockerfile that cannot undo the
hardening, and `init` writing a first contract a night runs."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import BENCH, IMPL, contract_for, git, make_patch, make_repo

ROOT = Path(__file__).resolve().parents[1]


def _wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel, written as the format says (no build tool, no network)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {**files, f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}  # fmt: skip
    record = []
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for rel, text in files.items():
            z.writestr(rel, text)
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            record.append(f"{rel},sha256={digest},{len(text.encode())}")
        z.writestr(f"{dist}/RECORD", "\n".join([*record, f"{dist}/RECORD,,"]) + "\n")
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the orchestrator from its wheel; its dependencies are this
    venv's (no network), reached by path so the editable checkout is never on it."""
    tmp = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(ROOT)], check=True, capture_output=True)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("autoresearch_orchestrator-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (Path(site) / "deps-of-the-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_a_wheel_install_works_from_any_folder(installed: Path, tmp_path: Path) -> None:
    ar = str(installed / "bin" / "autoresearch")
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import orchestrator; print(orchestrator.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout  # fmt: skip
    assert str(installed) in where and str(ROOT) not in where  # the wheel's, not this checkout
    out = subprocess.run([ar, "images", "build"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "autoresearch/python:3.11" in out.stderr, out.stderr
    bad = subprocess.run(
        [ar, "images", "build", "no-such"], capture_output=True, text=True, cwd=tmp_path
    )
    assert bad.returncode != 0 and "pick one of: agent, python, pytorch-cuda" in bad.stderr
    # a team's own repository: init, doctor, run
    repo = make_repo(tmp_path / "team", {"impl.py": IMPL, "bench.py": BENCH})
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPL.replace("10.0", "4.0"))
    subprocess.run([ar, "init", "--edit", "impl.py", "--eval", "python bench.py", "--metric", "score",
                    "--goal", "min", "--kind", "latency"], cwd=repo, check=True, capture_output=True)  # fmt: skip
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "autoresearch init")
    doctor = subprocess.run(
        [ar, "doctor", "autoresearch.toml"], cwd=repo, capture_output=True, text=True
    )
    assert doctor.returncode == 0 and "ok   isolation: harness" in doctor.stdout, doctor.stdout
    run = subprocess.run([ar, "run", "autoresearch.toml", "--agent", "replay", "--patches", str(patches),
                          "--tag", "first", "--budget", "60"], cwd=repo, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert git(repo, "show", "autoresearch/first:impl.py") == IMPL.replace("10.0", "4.0")


USES_DEP = IMPL.replace("OFFSET = 10.0", "import tinydep\n\nOFFSET = float(tinydep.VALUE)")


def test_the_projects_requirements_are_in_its_sandbox_and_rebuilt_when_they_change(
    tmp_path: Path, sandbox
) -> None:
    repo = make_repo(tmp_path / "deps", {"impl.py": USES_DEP, "bench.py": BENCH})
    token = f"# made for {tmp_path}\n"  # this test's own wheel, whatever images the machine holds
    wheel = _wheel(
        repo / "wheels", "tinydep", "1.0", {"tinydep/__init__.py": token + "VALUE = 42\n"}
    )
    (repo / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a dependency")
    said: list[str] = []
    over = {"sandbox.requirements": "requirements.txt", "agent": {"kind": "none"}}
    first = start_run(repo, "d1", contract_for(tmp_path, **over), "t", sandbox, say=said.append)
    first.execute()
    assert first.ledger.get(0).metric == 42.0  # imported in the candidate's worker, from the image
    assert sum("building the project's sandbox image" in m for m in said) == 1
    said.clear()
    start_run(repo, "d2", contract_for(tmp_path, **over), "t", sandbox, say=said.append).execute()
    assert not any("building" in m for m in said)  # the same inputs: the same image
    _wheel(repo / "wheels", "tinydep", "1.0", {"tinydep/__init__.py": token + "VALUE = 43\n"})
    said.clear()  # the same requirements line, another wheel behind it: rebuilt
    start_run(repo, "d2b", contract_for(tmp_path, **over), "t", sandbox, say=said.append).execute()
    assert sum("building" in m for m in said) == 1
    (wheel).unlink()
    wheel = _wheel(
        repo / "wheels", "tinydep", "2.0", {"tinydep/__init__.py": token + "VALUE = 7\n"}
    )
    (repo / "requirements.txt").write_text(f"./wheels/{wheel.name}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a new version")
    said.clear()
    third = start_run(repo, "d3", contract_for(tmp_path, **over), "t", sandbox, say=said.append)
    third.execute()
    assert third.ledger.get(0).metric == 7.0 and sum("building" in m for m in said) == 1
    assert first.contract.sandbox.image != third.contract.sandbox.image


HOSTILE = """ARG BASE
FROM ${BASE}
USER root
RUN cp /bin/sh /usr/local/bin/rootsh && chmod 4755 /usr/local/bin/rootsh
USER root
"""
PROBE = IMPL.replace(
    '"""The implementation the agent may change."""\n',
    '"""The implementation the agent may change."""\nimport os, stat\n'
    "print('UID', os.getuid(), 'SETUID', [p for p in ('/usr/local/bin/rootsh',) "
    "if os.path.exists(p) and os.stat(p).st_mode & stat.S_ISUID])\n",
)


def test_a_user_dockerfile_cannot_undo_the_hardening(tmp_path: Path, sandbox) -> None:
    repo = make_repo(
        tmp_path / "docker", {"impl.py": PROBE, "bench.py": BENCH, "sandbox.Dockerfile": HOSTILE}
    )
    over = {"sandbox.dockerfile": "sandbox.Dockerfile", "agent": {"kind": "none"}}
    run = start_run(repo, "h", contract_for(tmp_path, **over), "t", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    log = (run.ledger.exp_dir(0) / "candidate.log").read_text()
    assert "UID 10001 SETUID []" in log, log
    assert run.ledger.get(0).status == "keep"
