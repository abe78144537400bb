"""Running one frozen candidate until it yields a result: the attempt, the retries, the logs.

Each try is an `Attempt` (`executors/attempt.py`: the candidate's tree, a
fresh seed, the labels and GPUs) handed to the run's executor, on this machine
or a cluster node. Infrastructure failures are retried here, with backoff, and
never returned as the candidate's result.
"""

from __future__ import annotations

import random
import threading

from orchestrator.contract.model import Contract
from orchestrator.errors import Cancelled, InfraError
from orchestrator.executors import Executor
from orchestrator.executors.attempt import EXPERIMENT_LABEL, Attempt
from orchestrator.experiment import Experiment
from orchestrator.gateway.server import cost
from orchestrator.ledger import Ledger
from orchestrator.night import Backoff, Note
from orchestrator.sandbox import ContainerResult
from orchestrator.workspace import Workspace


def sibling_log(log_name: str, stage: str) -> str:
    """The log of another stage of the same run: output.log → score.log, confirm.log →
    score.confirm.log, output.2.log → score.output.2.log (never the run stage's own)."""
    return f"{stage}.log" if log_name == "output.log" else f"{stage}.{log_name}"


class Runner:
    """Runs one frozen candidate at a time (one per slot) through the executor."""

    def __init__(
        self,
        *,
        contract: Contract,
        ws: Workspace,
        executor: Executor,
        ledger: Ledger,
        note: Note,
        backoff: Backoff,
    ) -> None:
        self.contract = contract
        self.ws = ws
        self.executor = executor
        self.ledger = ledger
        self.note = note
        self.backoff = backoff
        self.run_dir = ledger.dir
        seccomp = self.run_dir / "seccomp.json"  # the run's snapshot: read once
        self.seccomp = seccomp.read_text() if seccomp.exists() else None
        self.gpus: tuple[str, ...] = ()
        """UUIDs of the GPUs leased for the experiment this runner is on."""
        self.cancelled = threading.Event()
        """Set when the night is being torn down: no more retries."""

    def measure(
        self, exp: Experiment, log_name: str = "output.log", contract: Contract | None = None
    ) -> ContainerResult:
        """Run `exp`'s commit until it yields a result; infrastructure failures are retried.
        `contract`: another budget or environment for this run (the screen's).

        Raises Cancelled when the night is torn down meanwhile.
        """
        what = f"experiment {exp.id} cancelled"

        def failed(e: Exception, pause: float) -> None:
            self.ledger.infra_retry(exp.id, str(e))
            self.note(
                "infra-error",
                f"  infrastructure error (not the candidate's fault): {e} — retrying in "
                f"{pause:.0f} s",
                experiment=exp.id,
                error=str(e),
                retry_in_s=pause,
            )

        result = self.backoff.retry(
            lambda: self._run_once(exp, contract or self.contract),
            retryable=lambda e: isinstance(e, InfraError),
            failed=failed,
            cancelled=self.cancelled,
            what=what,
        )
        if self.cancelled.is_set():  # killed by the teardown: not the candidate's result
            raise Cancelled(what)
        if (usd := cost(result.gateway)) and (now := self.ledger.get(exp.id)):
            # every run's services count in its cost, and so in budget.max_cost_usd
            self.ledger.cost(exp.id, (now.cost_usd or 0.0) + usd, now.usage)
        keep = self.contract.sandbox.log_bytes
        d = self.ledger.exp_dir(exp.id)
        (d / log_name).write_text((result.run_output or result.output)[-keep:])
        if result.run_output is not None:
            (d / sibling_log(log_name, "score")).write_text(result.output[-keep:])
        if result.candidate_output is not None:
            (d / sibling_log(log_name, "candidate")).write_text(result.candidate_output[-keep:])
        return result

    def _run_once(self, exp: Experiment, contract: Contract) -> ContainerResult:
        assert exp.commit_sha is not None
        try:
            tree = self.ws.archive(exp.commit_sha)
            added = self.ws.added(exp.parent, exp.commit_sha)
        except OSError as e:
            raise InfraError(f"exporting the candidate failed: {e}") from e
        return self.executor.run(
            Attempt(
                experiment=exp.id,
                tree=tree,
                contract=contract,
                env={
                    "HOME": "/tmp",
                    "AUTORESEARCH_EXPERIMENT": str(exp.id),
                    "AUTORESEARCH_SEED": str(random.SystemRandom().randrange(2**31)),
                },
                labels={"autoresearch.run": self.ws.tag, EXPERIMENT_LABEL: str(exp.id)},
                gpus=self.gpus,
                seccomp=self.seccomp,
                added=added,
            )
        )
