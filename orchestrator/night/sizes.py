"""How big a night is: its slots, the candidates proposed ahead, the proposals at once."""

from __future__ import annotations

import os

from orchestrator.agents import Agent
from orchestrator.contract.model import Contract
from orchestrator.errors import UserError
from orchestrator.executors import Executor
from orchestrator.gpus import GpuInventory, LeasePolicy, Leases, NvmlInventory, free


def lease_policy(contract: Contract) -> LeasePolicy:
    g = contract.gpus
    return LeasePolicy(
        g.max_memory_used, g.max_utilization, tuple(g.pin) if g.pin is not None else None
    )


def gpu_inventory(
    contract: Contract, executor: Executor, inventory: GpuInventory | None = None
) -> GpuInventory | None:
    """The GPUs this machine leases to the run's experiments (NVML's unless one is given): None
    when the cluster picks each experiment's."""
    if executor.assigns_gpus:
        return None
    if inventory is None and contract.sandbox.gpus:
        return NvmlInventory()
    return inventory


def gpu_leases(contract: Contract, inventory: GpuInventory | None) -> Leases | None:
    """Leases of `inventory`'s GPUs under the contract's `[gpus]` policy (None without one)."""
    return Leases(inventory, lease_policy(contract)) if inventory is not None else None


def check_gpus(contract: Contract, inventory: GpuInventory | None) -> None:
    """Raise UserError when the contract asks for more GPUs than this machine has."""
    want = contract.sandbox.gpus
    if not want or inventory is None:
        return
    have = inventory.snapshot()
    if len(have) < want:
        why = inventory.error
        raise UserError(
            f"sandbox.gpus = {want} but this machine has {len(have)} GPU(s)"
            + (f" (NVML: {why})" if why else "")
            + " — lower sandbox.gpus or run on a GPU box (`autoresearch doctor` checks NVML)"
        )


def default_parallel(contract: Contract, inventory: GpuInventory | None) -> int:
    """One slot per leasable group of `sandbox.gpus` GPUs; without GPUs, cores / `sandbox.cpus`."""
    s = contract.sandbox
    if s.gpus:
        policy = lease_policy(contract)
        gpus = inventory.snapshot() if inventory else []
        return max(1, sum(free(g, set(), policy) is None for g in gpus) // s.gpus)
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, int(cores // s.cpus))


def sizes(
    contract: Contract, executor: Executor, agent: Agent, inventory: GpuInventory | None
) -> tuple[int, int, int]:
    """(slots, candidates proposed ahead, most proposals at once): the budget's, else what
    the machine and the agent allow."""
    b = contract.budget
    parallel = b.parallel or (
        1 if agent.in_turn else executor.slots(contract) or default_parallel(contract, inventory)
    )
    pipeline = b.pipeline if b.pipeline is not None else (0 if agent.in_turn else 1)
    proposers = 1 if agent.in_turn else b.proposers or 4 * parallel + pipeline
    return parallel, pipeline, proposers
