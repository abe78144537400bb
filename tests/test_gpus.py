"""GPU leasing on a shared box, against a fake NVML inventory (no GPU here).

`scripts/gpu-check` exercises the real NVML path on a GPU box.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from orchestrator.gpus import FakeInventory, LeasePolicy, Leases, NvmlInventory, VramSampler, free


def test_leasing_skips_a_gpu_with_another_tenants_process() -> None:
    inv = FakeInventory.of(4)
    inv.gpus[1] = dataclasses.replace(inv.gpus[1], processes=((4242, 10 * 1024**3),))
    leases = Leases(inv)
    got = leases.acquire(4, "a")
    assert got is None  # only three are free
    got = leases.acquire(3, "a")
    assert got is not None and [g.index for g in got] == [0, 2, 3]
    assert leases.acquire(1, "b") is None  # all free ones are held
    leases.release(got[:1])
    again = leases.acquire(1, "b")
    assert again is not None and again[0].index == 0


def test_busy_or_full_gpus_are_not_free_until_they_are() -> None:
    inv = FakeInventory.of(2)
    total = inv.gpus[0].memory_total
    inv.gpus[0] = dataclasses.replace(inv.gpus[0], memory_used=total // 2)
    inv.gpus[1] = dataclasses.replace(inv.gpus[1], utilization=90)
    policy = LeasePolicy()
    assert "GiB already in use" in (free(inv.gpus[0], set(), policy) or "")
    assert "90% busy" in (free(inv.gpus[1], set(), policy) or "")
    leases = Leases(inv, policy)
    assert leases.acquire(1, "a") is None
    inv.gpus[1] = dataclasses.replace(
        inv.gpus[1], utilization=0
    )  # the tenant finished: re-checked each time
    got = leases.acquire(1, "a")
    assert got is not None and got[0].index == 1


def test_pinned_set_and_own_processes() -> None:
    inv = FakeInventory.of(4)
    inv.gpus[2] = dataclasses.replace(inv.gpus[2], processes=((77, 1024),))
    leases = Leases(inv, LeasePolicy(pinned=(0, 2)))
    got = leases.acquire(2, "a", own_pids={77})  # pid 77 is ours: not a foreign tenant
    assert got is not None and [g.index for g in got] == [0, 2]


def test_vram_sampler_keeps_the_peak_of_the_pids_it_follows() -> None:
    inv = FakeInventory.of(2)
    pids = {10}
    with VramSampler(inv, lambda: pids, interval=0.01) as s:
        for used in (1, 5, 3):
            inv.gpus[0] = dataclasses.replace(
                inv.gpus[0], processes=((10, used * 1024**3), (99, 70 * 1024**3))
            )
            seen, deadline = s.samples, time.monotonic() + 10
            while s.samples < seen + 2 and time.monotonic() < deadline:  # sampled at least once
                time.sleep(0.01)
    assert s.peak == 5 * 1024**3 and s.samples > 3


def test_no_nvml_means_zero_gpus_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "pynvml":
            raise ImportError("no NVML library (as on a box without the driver)")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)  # the same on a GPU box and off one
    inv = NvmlInventory()
    assert inv.snapshot() == [] and inv.error and "NVML" in inv.error
    assert inv.process_memory({1}) is None
