"""Running one frozen candidate in the sandbox: the workspace, the mounts, the retries,
and the sealed scoring stage.

Every run gets a fresh capped filesystem holding `workspace/` (a copy of the
candidate commit, evaluator files mounted read-only over it) and `results/`.
With a `[score]` stage, a second fresh container then runs the trusted scorer
with the run stage's `/results` read-only and the secret data read-only — and
without the implementation; only its metrics count. Infrastructure failures are
retried here, with backoff, and never returned as the candidate's result.
"""

from __future__ import annotations

import random
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from orchestrator.contract import Contract, DataMount
from orchestrator.errors import Cancelled, InfraError
from orchestrator.ledger import Experiment, Ledger
from orchestrator.sandbox import Mount, RunResult, RunSpec, SandboxBackend
from orchestrator.sandbox.disk import Workdir, capped_workdir
from orchestrator.workspace import Workspace, remove_tree

Note = Callable[..., None]


class Runner:
    def __init__(self, *, contract: Contract, ws: Workspace, sandbox: SandboxBackend, ledger: Ledger,
                 note: Note, first_delay: float, max_delay: float) -> None:  # fmt: skip
        self.contract = contract
        self.ws = ws
        self.sandbox = sandbox
        self.ledger = ledger
        self.note = note
        self.first_delay, self.max_delay = first_delay, max_delay
        self.run_dir = ledger.dir
        self.box = self.run_dir / "sandbox"
        self.gpus: tuple[str, ...] = ()
        """UUIDs of the GPUs leased for the experiment this runner is on."""
        self.cancelled = threading.Event()
        """Set when the night is being torn down: no more retries."""

    def run(self, exp: Experiment, log_name: str = "output.log") -> RunResult:
        """Run `exp`'s commit until it yields a result; infrastructure failures are retried."""
        delay = self.first_delay
        while True:
            if self.cancelled.is_set():
                raise Cancelled(f"experiment {exp.id} cancelled")
            try:
                result = self._run_once(exp)
            except InfraError as e:
                if self.cancelled.is_set():
                    raise Cancelled(f"experiment {exp.id} cancelled") from e
                self.ledger.infra_retry(exp.id, str(e))
                self.note("infra-error", f"  infrastructure error (not the candidate's fault): {e} — retrying in "
                          f"{delay:.0f} s", experiment=exp.id, error=str(e), retry_in_s=delay)  # fmt: skip
                self.cancelled.wait(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if self.cancelled.is_set():  # killed by the teardown: not the candidate's result
                raise Cancelled(f"experiment {exp.id} cancelled")
            keep = self.contract.sandbox.log_bytes
            d = self.ledger.exp_dir(exp.id)
            (d / log_name).write_text((result.run_output or result.output)[-keep:])
            if result.run_output is not None:
                (d / log_name.replace("output", "score")).write_text(result.output[-keep:])
            return result

    def _folder(self, exp: Experiment) -> Path:
        self.box.mkdir(mode=0o700, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{exp.id:04d}-", dir=self.box))

    def _cleanup(self, exp: Experiment, parent: Path) -> None:
        try:
            remove_tree(parent)
        except OSError as e:  # e.g. files the sandbox user made that we may not delete
            self.ledger.event("leftover", f"{parent}: {e}", exp.id)

    def _run_once(self, exp: Experiment) -> RunResult:
        assert exp.commit_sha is not None
        c = self.contract
        parent = self._folder(exp)
        try:
            with capped_workdir(parent, c.sandbox.disk) as disk:
                self.ws.export(exp.commit_sha, disk.path, writable_by_all=True)
                self._seal(disk.path)
                mounts = self._mounts(
                    disk, self.run_dir / "evaluator", c.evaluator.paths, c.evaluator.data
                )
                mounts.append(Mount(disk.results, "/results", read_only=False))
                result = self.sandbox.run(
                    self._spec(exp, disk, c.evaluator.command, c.budget.seconds, mounts)
                )
                if c.score is None or _failed(result):
                    return result
                return self._score(exp, result, disk.results)
        except OSError as e:
            raise InfraError(f"preparing the sandbox folder failed: {e}") from e
        finally:
            self._cleanup(exp, parent)

    def _seal(self, workspace: Path) -> None:
        """The run stage never sees the scorer or its secret data, even where they live in the repo."""
        score = self.contract.score
        if score is None:
            return
        hidden = list(score.paths) + [
            str(m.source) for m in score.data if not m.source.is_absolute()
        ]
        for rel in hidden:
            path = workspace / rel
            if path.is_dir():
                remove_tree(path)
            else:
                path.unlink(missing_ok=True)

    def _score(self, exp: Experiment, ran: RunResult, results: Path) -> RunResult:
        """The sealed stage: the scorer, the run's results (read-only) and the secrets; no implementation."""
        score = self.contract.score
        assert score is not None
        parent = self._folder(exp)
        try:
            with capped_workdir(parent, self.contract.sandbox.disk) as disk:
                mounts = self._mounts(disk, self.run_dir / "scorer", score.paths, score.data)
                mounts.append(Mount(results, "/results", read_only=True))
                scored = self.sandbox.run(
                    self._spec(exp, disk, score.command, score.seconds, mounts)
                )
        finally:
            self._cleanup(exp, parent)
        return replace(scored, wall_s=ran.wall_s + scored.wall_s, peak_memory_bytes=ran.peak_memory_bytes,
                       cpu_s=ran.cpu_s, workspace_bytes=ran.workspace_bytes, run_output=ran.output)  # fmt: skip

    def _mounts(
        self, disk: Workdir, snapshot: Path, paths: list[str], data: list[DataMount]
    ) -> list[Mount]:
        mounts = [Mount(snapshot / p, f"/workspace/{p}") for p in paths]
        for p in paths:  # Docker needs the mount point to exist
            target = disk.path / p
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                (target.mkdir() if (snapshot / p).is_dir() else target.touch())
        root = self.ws.root
        mounts += [
            Mount(m.source if m.source.is_absolute() else root / m.source, m.target) for m in data
        ]
        return mounts

    def _spec(
        self, exp: Experiment, disk: Workdir, command: str, seconds: float, mounts: list[Mount]
    ) -> RunSpec:
        c = self.contract
        env = {
            **c.sandbox.env,
            "HOME": "/tmp",
            "AUTORESEARCH_EXPERIMENT": str(exp.id),
            "AUTORESEARCH_SEED": str(random.SystemRandom().randrange(2**31)),
            "AUTORESEARCH_BUDGET_S": f"{seconds:g}",
        }
        labels = {"autoresearch.run": self.ws.tag, "autoresearch.experiment": str(exp.id)}
        seccomp = self.run_dir / "seccomp.json"
        return RunSpec(
            workspace=disk.path, command=command, budget_s=seconds, limits=c.sandbox, mounts=tuple(mounts),
            env=env, labels=labels, disk=disk, seccomp=seccomp.read_text() if seccomp.exists() else None,
            gpus=self.gpus,
        )  # fmt: skip


def _failed(r: RunResult) -> bool:
    return r.timed_out or r.oom_killed or r.disk_full or r.exit_code != 0
