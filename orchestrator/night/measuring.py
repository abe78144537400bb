"""Measuring a run's commits outside its night (`autoresearch verify`).

What a re-run needs of a night is one slot: its runner (the executor, the retries
of the infrastructure), its GPU leases (waiting while none is free, as a slot
does) and its judge's noise band over the ledger. `measuring` makes exactly that,
without the night's agent, proposers, merges or event log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from orchestrator import sanitize
from orchestrator.contract.model import Contract
from orchestrator.executors import Executor
from orchestrator.experiment import Experiment
from orchestrator.gpus import GpuInventory
from orchestrator.ledger import Ledger
from orchestrator.night import Backoff, Say
from orchestrator.night.sizes import check_gpus, gpu_inventory, gpu_leases
from orchestrator.night.slots import Slot, Slots
from orchestrator.sandbox import ContainerResult
from orchestrator.workspace import Workspace


@dataclass
class Measuring:
    """One slot of a run, outside its night."""

    contract: Contract
    ledger: Ledger
    ws: Workspace
    executor: Executor
    slots: Slots

    @property
    def _slot(self) -> Slot:
        return self.slots.slots[0]

    def band(self) -> float:
        """The run's noise band, from its baseline's samples."""
        return self._slot.judge.band()

    def measure(self, exp: Experiment, log_name: str) -> ContainerResult:
        """Run `exp`'s commit (on the GPUs `leased` holds), its output kept as `log_name`."""
        return self._slot.runner.measure(exp, log_name)

    @contextlib.contextmanager
    def leased(self) -> Iterator[None]:
        """The GPUs of one of the night's experiments, held while the block runs (none without)."""
        got = self.slots.lease(self._slot, -1)
        self._slot.runner.gpus = tuple(g.uuid for g in got)
        try:
            yield
        finally:
            self.slots.give_back(got)
            self._slot.runner.gpus = ()

    def close(self) -> None:
        """What the executor made ahead goes (`executors/seats.py`)."""
        self.executor.close()


def measuring(
    contract: Contract,
    ledger: Ledger,
    ws: Workspace,
    executor: Executor,
    say: Say,
    inventory: GpuInventory | None = None,
) -> Measuring:
    """One slot over the run's executor. Raises UserError when the contract asks for more GPUs
    than this machine has."""
    inventory = gpu_inventory(contract, executor, inventory)
    check_gpus(contract, inventory)

    def note(_event: str, message: str, **_fields: object) -> None:
        say(sanitize.terminal(message))  # sentences may quote a candidate's text

    slots = Slots(
        contract=contract,
        ledger=ledger,
        workspace=ws,
        executor=executor,
        leases=gpu_leases(contract, inventory),
        count=1,
        note=note,
        event=lambda *_a, **_k: None,
        backoff=Backoff(),
    )
    return Measuring(contract, ledger, ws, executor, slots)
