"""Parallel slots, GPU leasing per experiment, stale winners, pipelining — on the real engine.

GPUs come from a fake inventory (this machine has none). The CPU engine here cannot
start a container with a GPU device request, so the sandbox below records the UUIDs
each experiment was given and runs it without them; that the request reaches the
container's HostConfig is checked in test_gpus.py on a created container.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from pathlib import Path

import pytest

from orchestrator.agents import Context, Proposal
from orchestrator.agents.context import render_history
from orchestrator.gpus import FakeInventory, Gpu
from orchestrator.ledger import Ledger
from orchestrator.night import Backoff
from orchestrator.night.driver import Night
from orchestrator.night.sizes import default_parallel
from orchestrator.runs import start_run
from tests.conftest import WrappedSandbox, contract_for, make_patch, make_repo

IMPL = '''"""The implementation the agent may change."""
OFFSET = 10.0

SCALE = 1.0

DELAY = 0.0


def score():
    return OFFSET * SCALE
'''

BENCH = """import time
import impl

time.sleep(impl.DELAY)
print(f"score: {impl.score():.6f}")
"""


class GpuRecorder(WrappedSandbox):
    """The real sandbox; records each experiment's leased GPUs and when it ran."""

    def __init__(self, real, on_run=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(real)
        self.on_run = on_run
        self.runs: list[tuple[str, tuple[str, ...], float, float]] = []
        self._lock = threading.Lock()

    def run(self, spec):  # type: ignore[no-untyped-def]
        exp = spec.labels["autoresearch.experiment"]
        if self.on_run:
            self.on_run(exp, spec.gpus)
        t0 = time.monotonic()
        result = self.real.run(dataclasses.replace(spec, gpus=()))
        with self._lock:
            self.runs.append((exp, spec.gpus, t0, time.monotonic()))
        return result


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project", {"impl.py": IMPL, "bench.py": BENCH})


def _start(repo: Path, sandbox, tag: str, patches: Path, inventory=None, **over: object) -> Night:  # type: ignore[no-untyped-def]
    contract = contract_for(patches, **over)
    return start_run(repo, tag, contract, "test", sandbox, say=lambda _m: None,
                     backoff=Backoff(0.1, 0.5), inventory=inventory)  # fmt: skip


def test_four_slots_on_four_fake_gpus_run_at_once_each_on_its_own_gpu(
    tmp_path: Path, sandbox
) -> None:
    repo = _repo(tmp_path)
    patches = tmp_path / "patches"
    for i in range(8):  # all no better than the baseline: each forks from it and is discarded
        make_patch(
            patches,
            f"{i:02d}.patch",
            "impl.py",
            IMPL,
            IMPL.replace("DELAY = 0.0", "DELAY = 2.0") + f"# {i}\n",
        )
    recorder = GpuRecorder(sandbox)
    run = _start(repo, recorder, "g4", patches, FakeInventory.of(4), **{
        "sandbox.gpus": 1, "budget.parallel": 4, "budget.pipeline": 1, "budget.baseline_repeats": 1})  # fmt: skip
    assert default_parallel(run.contract.model_copy(update={"budget": run.contract.budget.model_copy(
        update={"parallel": None})}), FakeInventory.of(4)) == 4  # by default, one slot per leasable GPU  # fmt: skip
    assert run.execute() == "the agent has nothing more to propose"

    runs = [r for r in recorder.runs if r[0] != "0"]
    assert len(runs) == 8 and all(len(gpus) == 1 for _, gpus, _, _ in runs)
    edges = sorted([(t0, 1) for *_, t0, _ in runs] + [(t1, -1) for *_, t1 in runs])
    assert (
        max(itertools.accumulate(step for _, step in edges)) == 4
    )  # four experiments in flight at once
    for a in runs:  # never two experiments on one GPU at the same time
        for b in runs:
            if a is not b and a[1] == b[1]:
                assert a[3] <= b[2] or b[3] <= a[2], (a, b)
    assert len({r[1] for r in runs}) == 4
    exps = run.ledger.experiments()
    assert {e.slot for e in exps if e.id} == {0, 1, 2, 3}
    assert max(len(run.ledger.concurrent_with(e.id)) for e in exps if e.id) >= 3
    info = run.ledger.run()
    assert (
        info is not None
        and info.slots == 4
        and info.duty_cycle is not None
        and 0 < info.duty_cycle <= 1
    )


def test_leasing_skips_a_foreign_tenants_gpu_and_waits_for_one_that_becomes_busy(
    tmp_path: Path, sandbox
) -> None:
    repo = _repo(tmp_path)
    patches = tmp_path / "patches"
    for i in range(6):
        make_patch(patches, f"{i:02d}.patch", "impl.py", IMPL, IMPL + f"# {i}\n")
    inv = FakeInventory.of(3)
    inv.gpus[1] = dataclasses.replace(
        inv.gpus[1], processes=((999_999, 2 * 1024**3),)
    )  # another tenant

    def tenant_arrives(exp: str, gpus: tuple[str, ...]) -> None:
        if (
            exp == "2"
        ):  # someone starts using GPU 2 as experiment 2 begins; it leaves after experiment 4
            inv.gpus[2] = dataclasses.replace(inv.gpus[2], utilization=95)
        if exp == "5":
            inv.gpus[2] = dataclasses.replace(inv.gpus[2], utilization=0)

    recorder = GpuRecorder(sandbox, tenant_arrives)
    run = _start(
        repo,
        recorder,
        "lease",
        patches,
        inv,
        **{"sandbox.gpus": 1, "budget.baseline_repeats": 1, "budget.parallel": 2},
    )
    assert default_parallel(run.contract, inv) == 2  # GPU 1 is another tenant's
    assert run.execute() == "the agent has nothing more to propose"
    given = {exp: gpus for exp, gpus, _, _ in recorder.runs}
    assert all(g != ("GPU-fake-0001",) for g in given.values())  # the foreign tenant's GPU: never
    assert given["3"] == given["4"] == ("GPU-fake-0000",)  # GPU 2 busy: not leased again...
    assert ("GPU-fake-0002",) in given.values()


def test_a_gpu_run_on_a_box_without_enough_gpus_is_one_clear_line(tmp_path: Path, sandbox) -> None:
    from orchestrator.errors import UserError

    repo = _repo(tmp_path)
    run = _start(
        repo, sandbox, "nogpu", _one_patch(tmp_path), FakeInventory.of(1), **{"sandbox.gpus": 2}
    )
    with pytest.raises(UserError, match=r"sandbox.gpus = 2 but this machine has 1 GPU"):
        run.execute()


def _one_patch(tmp_path: Path) -> Path:
    make_patch(tmp_path / "one", "01.patch", "impl.py", IMPL, IMPL + "# one\n")
    return tmp_path / "one"


def _two_winners(tmp_path: Path, second: str) -> Path:
    patches = tmp_path / "patches"
    make_patch(
        patches, "01-offset.patch", "impl.py", IMPL, IMPL.replace("OFFSET = 10.0", "OFFSET = 4.0")
    )
    make_patch(patches, "02-slow.patch", "impl.py", IMPL, second)
    return patches


def test_a_stale_winner_is_rebased_onto_the_new_best_and_confirmed(tmp_path: Path, sandbox) -> None:
    repo = _repo(tmp_path)
    # Both fork from the baseline; #1 (fast) merges first, #2 (slow, an independent gain) wins on a stale base.
    second = IMPL.replace("SCALE = 1.0", "SCALE = 0.3").replace("DELAY = 0.0", "DELAY = 3.0")
    run = _start(repo, sandbox, "stale", _two_winners(tmp_path, second), **{"budget.parallel": 2})
    assert run.execute() == "the agent has nothing more to propose"
    first, late = run.ledger.get(1), run.ledger.get(2)
    assert first is not None and late is not None
    assert first.merged and first.metric == pytest.approx(4.0)
    assert (
        late.rebases == 1 and late.rebased_from is not None and late.rebased_from != late.commit_sha
    )
    assert late.parent == first.merged_sha  # replayed on the new best
    assert (
        late.status == "keep" and late.merged and late.metric == pytest.approx(1.2)
    )  # 4.0 × 0.3, measured again
    assert "rebased onto the new best and still a win" in (late.reason or "")
    assert 1 in run.ledger.concurrent_with(2)  # it ran while #1 did: why it needed a rebase
    head = run.ws.best()
    assert head == late.merged_sha
    assert b"OFFSET = 4.0" in run.ws.git("show", f"{head}:impl.py")
    assert b"SCALE = 0.3" in run.ws.git("show", f"{head}:impl.py")
    assert (run.ledger.exp_dir(2) / "diff.rebased.1.patch").exists()


def test_a_stale_winner_that_conflicts_is_discarded(tmp_path: Path, sandbox) -> None:
    repo = _repo(tmp_path)
    second = IMPL.replace("OFFSET = 10.0", "OFFSET = 3.0").replace("DELAY = 0.0", "DELAY = 3.0")
    run = _start(
        repo, sandbox, "conflict", _two_winners(tmp_path, second), **{"budget.parallel": 2}
    )
    assert run.execute() == "the agent has nothing more to propose"
    first, late = run.ledger.get(1), run.ledger.get(2)
    assert first is not None and late is not None and first.merged
    assert late.status == "discard" and not late.merged and late.rebases == 0
    assert "conflicts with #1" in (late.reason or "")
    assert late.metric == pytest.approx(3.0)  # what it measured is kept
    assert run.ws.best() == first.merged_sha
    tsv = (run.run_dir / "results.tsv").read_text().splitlines()
    assert tsv[2].split("\t")[3] == "keep" and tsv[3].split("\t")[3] == "discard"


class ThinkingAgent:
    """Writes a new comment each time after `think` seconds; records what it was shown."""

    in_turn = False

    def __init__(self, think: float, count: int) -> None:
        self.think, self.count, self.n = think, count, 0
        self.seen: list[list[tuple[int, str]]] = []
        self.lock = threading.Lock()

    def cancel(self) -> None:
        pass

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        with self.lock:
            if self.n >= self.count:
                return None
            self.n += 1
            n = self.n
            self.seen.append([(e.id, e.phase) for e in ctx.history])
        time.sleep(self.think)
        path = scratch / "impl.py"
        path.write_text(path.read_text() + f"# {n}\n")
        return Proposal(f"comment {n}", "no effect expected")


def test_the_agent_proposes_while_experiments_run_and_sees_them_in_flight(
    tmp_path: Path, sandbox
) -> None:
    repo = _repo(tmp_path)
    (repo / "impl.py").write_text(IMPL.replace("DELAY = 0.0", "DELAY = 2.0"))
    from tests.conftest import git

    git(repo, "commit", "-qam", "slow")
    agent = ThinkingAgent(think=1.0, count=4)
    run = _start(
        repo,
        sandbox,
        "pipe",
        _one_patch(tmp_path),
        **{"budget.pipeline": 1, "budget.baseline_repeats": 1},
    )
    run.proposals.agent = agent
    assert run.execute() == "the agent has nothing more to propose"
    in_flight = [seen for seen in agent.seen if any(p in ("frozen", "running") for _, p in seen)]
    assert len(in_flight) >= 3  # it thought while the previous candidate ran
    flying = dataclasses.replace(run.ledger.get(1), phase="running", status=None, metric=None)  # type: ignore[type-var]
    text = render_history([run.ledger.experiments()[0], flying], {})
    assert "#1 IN FLIGHT" in text and "comment 1" in text
    info = run.ledger.run()
    # the slot's busy time is accounted (its level depends on the machine's load: `make bench`)
    assert info is not None and info.duty_cycle is not None and 0 < info.duty_cycle <= 1


def test_the_ledger_migrates_an_older_schema(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.executescript(
        "CREATE TABLE run (tag TEXT PRIMARY KEY, created REAL NOT NULL, base_commit TEXT NOT NULL, contract TEXT "
        "NOT NULL, source TEXT NOT NULL, evaluator_hash TEXT NOT NULL, image_id TEXT NOT NULL DEFAULT '', "
        "active_s REAL NOT NULL DEFAULT 0, stopped TEXT);"
        "INSERT INTO run VALUES ('old', 0, 'abc', '{}', 'x', 'h', '', 5, NULL);"
    )
    db.commit()
    db.close()
    info = Ledger(tmp_path).run()
    assert info is not None and info.tag == "old" and info.slots == 1 and info.duty_cycle is None


def test_a_gpu_is_never_leased_to_two_holders() -> None:
    inv = FakeInventory([Gpu(0, "GPU-a", "Fake", 80 * 1024**3, 0, 0)])
    from orchestrator.gpus import Leases

    leases = Leases(inv)
    got = leases.acquire(1, holder="slot-0")
    assert got is not None and leases.acquire(1, holder="slot-1") is None
    leases.release(got)
    assert leases.acquire(1, holder="slot-1") is not None


def test_results_tsv_memory_is_the_peak_vram_when_a_gpu_was_used(tmp_path: Path) -> None:
    from orchestrator.sandbox import ContainerResult

    ledger = Ledger(tmp_path)
    for i, vram in enumerate([3 * 1024**3, None]):
        ledger.begin(i, "p")
        ledger.frozen(i, f"{i}" * 40, f"exp {i}", "", 1)
        r = ContainerResult(0, False, False, 1.0, 1024**3, 1.0, "", peak_vram_bytes=vram)
        ledger.decided(i, status="keep", reason="r", metric=1.0, result=r)
        ledger.done(i, merged=False)  # results.tsv holds finished experiments
    rows = [line.split("\t") for line in ledger.write_results_tsv().read_text().splitlines()[1:]]
    assert [row[2] for row in rows] == ["3.0", "1.0"]
    assert ledger.get(0).peak_vram_bytes == 3 * 1024**3  # type: ignore[union-attr]


def test_verify_reruns_a_gpu_night_on_leased_gpus(tmp_path: Path, sandbox) -> None:
    from orchestrator.morning.verify import verify
    from orchestrator.runs import open_measuring

    repo = _repo(tmp_path)
    patches = tmp_path / "patches"
    make_patch(patches, "01.patch", "impl.py", IMPL, IMPL.replace("OFFSET = 10.0", "OFFSET = 4.0"))
    recorder = GpuRecorder(sandbox)
    inventory = FakeInventory.of(2)
    run = _start(repo, recorder, "vgpu", patches, inventory, **{"sandbox.gpus": 1})
    run.execute()
    before = len(recorder.runs)
    checks = verify(
        open_measuring(repo, "vgpu", recorder, say=lambda _m: None, inventory=inventory)
    )
    assert len(checks) == 1 and checks[0].now == pytest.approx(4.0)
    # the win and its parent, each on a leased GPU, as in the night
    assert [len(g) for _, g, _, _ in recorder.runs[before:]] == [1, 1]
    assert run.leases is not None and run.leases.acquire(2, "after") is not None  # and given back
