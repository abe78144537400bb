"""`make test` sets up gVisor and Chromium or fails: a set-up that cannot happen is never a
silent skip of the tests that need it, unless a person opts out by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _fake_bin(tmp_path: Path) -> Path:
    """A PATH where no engine answers, no browser exists and the user is not root."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("docker", "exit 1"), ("id", "echo 1000")):
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    (fake / "grep").symlink_to("/bin/grep")
    return fake


@pytest.mark.parametrize(("script", "opt_out"), [("ensure-runsc", "AUTORESEARCH_TEST_WITHOUT_RUNSC"),
                                                 ("ensure-chromium", "AUTORESEARCH_TEST_WITHOUT_CHROMIUM")])  # fmt: skip
def test_a_failed_set_up_fails_make_test_unless_opted_out(
    script: str, opt_out: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_TEST_WITHOUT")}
    env["PATH"] = str(_fake_bin(tmp_path))

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/bash", str(SCRIPTS / script), *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    required = run("--required")
    assert required.returncode == 1, required.stderr
    assert opt_out in required.stderr and len(required.stderr.strip().splitlines()) == 1
    assert run("--required", **{opt_out: "1"}).returncode == 0  # opted out by name
    assert run().returncode == 0  # `make engine`: optional, said
    assert "skip" in run().stderr


def _runsc(tmp_path: Path, platform: str) -> Path:
    """A runsc that prints its flags on stderr, as gVisor's does, defaulting to `platform`."""
    runsc = tmp_path / f"runsc-{platform}"
    runsc.write_text(
        "#!/bin/sh\n/bin/cat >&2 <<'END'\n  -platform string\n"
        f'    \tspecifies which platform to use: {platform} (default), kvm. (default "{platform}")\nEND\n'
    )
    runsc.chmod(0o755)
    return runsc


@pytest.mark.parametrize("platform", ["ptrace", "systrap"])
def test_a_registered_runsc_from_before_systrap_is_named_as_slow_and_still_used(
    platform: str, tmp_path: Path
) -> None:
    from orchestrator.sandbox import gvisor

    runsc = _runsc(tmp_path, platform)
    fake = _fake_bin(tmp_path)
    (fake / "python3").symlink_to(sys.executable)
    runtimes = json.dumps(
        {"runsc": {"path": str(runsc), "runtimeArgs": ["--network=none", "--host-uds=open"]}}
    )
    (fake / "docker").write_text(f"#!/bin/sh\necho '{runtimes}'\n")
    env = {"PATH": str(fake), "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/bash", str(SCRIPTS / "ensure-runsc"), "--required"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr  # registered: it works, only slowly
    ok, line = gvisor.describe(json.loads(runtimes))
    assert ok and f"{platform} platform" in line
    if platform == "ptrace":
        assert "~70 µs" in done.stderr and "ensure-runsc" in line
    else:
        assert done.stderr == "" and "ensure-runsc" not in line


@pytest.mark.parametrize(
    ("args", "says"),
    [(["--platform=kvm"], "kvm platform"), (["--platform", "ptrace"], "drop --platform from the engine's runtimeArgs"),
     (["--network=none"], "systrap platform")],
)  # fmt: skip
def test_the_platform_the_engine_passes_runsc_is_the_one_named(
    tmp_path: Path, args: list[str], says: str
) -> None:
    """A `--platform` in the engine's runtimeArgs overrides runsc's own default: doctor names it."""
    from orchestrator.sandbox import gvisor

    runsc = _runsc(tmp_path, "systrap")
    ok, line = gvisor.describe({"runsc": {"path": str(runsc), "runtimeArgs": args}})
    assert ok and says in line, line
