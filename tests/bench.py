"""`make bench`: orchestration overhead per experiment vs a bare `docker run`, and more.

Both are measured in the same run, interleaved: before each experiment's proposal
the agent times one bare `docker run`, so a burst of machine noise hits both sides
(ratios travel, absolute seconds do not). A no-op evaluator isolates what the orchestrator adds: export the
tree, freeze the commit, create/start/wait/remove a hardened container, parse,
decide, write the ledger and results.tsv.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.agents import Context, Proposal
from orchestrator.agents.replay import ReplayAgent
from orchestrator.contract.load import build_contract
from orchestrator.contract.model import DEFAULT_IMAGE
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from orchestrator.sandbox.docker import DockerSandbox
from tests import (
    bench_gateway,
    bench_proposers,
    bench_scale,
    bench_screen,
    bench_search,
    bench_suites,
    bench_tuner,
)
from tests.conftest import IMPL, make_patch, make_repo

EXPERIMENTS = 20
COMMAND = "echo score: 1"


def bare_runs(n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--network", "none", DEFAULT_IMAGE, "sh", "-c", COMMAND],
                       check=True, capture_output=True)  # fmt: skip
        out.append(time.perf_counter() - t0)
    return out


class InterleavedReplay:
    """The replay agent, timing one bare `docker run` before each proposal."""

    def __init__(self, patches: Path) -> None:
        self.inner = ReplayAgent(patches)
        self.bare: dict[int, float] = {}

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        if ctx.experiment <= len(self.inner.patches):
            self.bare[ctx.experiment] = bare_runs(1)[0]
        return self.inner.propose(ctx, scratch)

    def cancel(self) -> None:
        self.inner.cancel()


def _noop_night(tmp: Path, n: int, isolation: str, pipeline: int, name: str):  # type: ignore[no-untyped-def]
    """A night of n no-op discards (replay patches) in `isolation`, the agent `pipeline` ahead."""
    repo = make_repo(tmp / f"repo-{name}", {"impl.py": IMPL})
    patches = tmp / f"patches-{name}"
    for i in range(n):
        make_patch(patches, f"{i:03d}.patch", "impl.py", IMPL, IMPL.replace("10.0", f"{i}.5"))
    contract = build_contract(
        {
            "implementation": {"paths": ["impl.py"]},
            "evaluator": {"command": COMMAND, "isolation": isolation},
            "metric": {"name": "score", "goal": "min"},
            "agent": {"kind": "replay", "patches": str(patches)},
            "budget": {"parallel": 1, "pipeline": pipeline},
        },
        {},
        "bench",
    )
    sandbox = DockerSandbox()
    return start_run(
        repo, name, contract, "bench", sandbox, say=lambda _m: None, backoff=Backoff(1, 5)
    ), patches


def orchestrated_runs(
    tmp: Path, n: int, isolation: str = "shared"
) -> tuple[list[float], list[float]]:
    """(bare docker run seconds, full experiment seconds without that bare run), interleaved:
    one experiment's whole cost end to end (`pipeline = 0`: nothing overlaps it)."""
    run, patches = _noop_night(tmp, n, isolation, 0, isolation)
    agent = InterleavedReplay(patches)
    run.proposals.agent = agent
    run.execute()
    exps = [e for e in run.ledger.experiments() if e.id > 0]
    assert len(exps) == n and all(e.status == "discard" for e in exps), [e.status for e in exps]
    bare = [agent.bare[e.id] for e in exps]
    ours = [e.finished - e.started - agent.bare[e.id] for e in exps if e.finished is not None]
    return bare, ours


def night_cost(
    tmp: Path, rounds: int, n: int, isolation: str = "harness"
) -> list[tuple[float, float]]:
    """(bare docker run, one experiment of a night) in seconds, per round: n bare runs in a row,
    then a night of n experiments with the agent one ahead (the default `pipeline = 1`), its
    cost per experiment from the baseline's end to the last record. A round's two figures
    share the machine's state; the rounds spread over its drift."""
    out = []
    for r in range(rounds):
        bare = statistics.mean(bare_runs(n))
        run, _ = _noop_night(tmp, n, isolation, 1, f"{isolation}-night-{r}")
        run.execute()
        exps = {e.id: e for e in run.ledger.experiments()}
        assert len(exps) == n + 1 and all(e.status == "discard" for i, e in exps.items() if i), exps
        last = max(e.finished or 0.0 for e in exps.values())
        out.append((bare, (last - (exps[0].finished or 0.0)) / n))
    return out


NOISY_BENCH = """import random
import autoresearch_harness as harness
from impl import score
print(f"score: {score() + random.Random(harness.seed()).gauss(0, 1):.6f}")
"""
NOISE = {"budget.baseline_repeats": 8, "metric.repeats": 3, "metric.z": 1.5}


def seed_only_night(tmp: Path, n: int = 40) -> int:
    """A real night: n changes that only change the seed, under σ = 1 noise. How many are kept?"""
    repo = make_repo(tmp / "noisy", {"impl.py": IMPL, "bench.py": NOISY_BENCH})
    patches = tmp / "seed-patches"
    for i in range(n):
        make_patch(patches, f"{i:03d}.patch", "impl.py", IMPL, IMPL + f"# seed-only change {i}\n")
    contract = build_contract(
        {"implementation": {"paths": ["impl.py"]}, "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
         "metric": {"name": "score", "goal": "min"}, "agent": {"kind": "replay", "patches": str(patches)}},
        {k: v for k, v in NOISE.items()}, "bench",
    )  # fmt: skip
    run = start_run(
        repo,
        "noise",
        contract,
        "bench",
        DockerSandbox(),
        say=lambda _m: None,
        backoff=Backoff(1, 5),
    )
    run.execute()
    return sum(1 for e in run.ledger.experiments()[1:] if e.status == "keep")


def simulated_rates(trials: int = 2000) -> tuple[float, float]:
    """The same decision code on simulated runs: (seed-only keeps per 40, share of 3σ wins kept)."""
    import random

    from orchestrator.night.decision import Best, Outcome, combine, decide

    rng = random.Random(0)
    metric = build_contract({"implementation": {"paths": ["a"]}, "evaluator": {"command": "x"},
                             "metric": {"name": "s", "goal": "min"}}, NOISE, "sim").metric  # fmt: skip
    k_base, k_cand = NOISE["budget.baseline_repeats"], NOISE["metric.repeats"]

    def measure(mean: float, k: int) -> list[dict[str, float]]:
        return [{"s": rng.gauss(mean, 1.0)} for _ in range(k)]

    def night(delta: float, changes: int) -> int:
        base = measure(10.0, int(k_base))
        sigma = statistics.stdev(r["s"] for r in base)
        best = combine(base, "median")["s"]
        kept = 0
        for _ in range(changes):
            value = combine(measure(10.0 - delta, int(k_cand)), "median")
            if (
                decide(
                    Outcome(0, False, False, value), Best(best, None), metric, sigma=sigma
                ).status
                == "keep"
            ):
                kept, best = kept + 1, value["s"]
        return kept

    false_keeps = statistics.fmean(night(0.0, 40) for _ in range(trials // 10))
    true_rate = statistics.fmean(night(3.0, 1) for _ in range(trials))
    return false_keeps, true_rate


def tuner_on_ml_training(tmp: Path, experiments: int = 8) -> tuple[float, float, int | None]:
    """The offline tuner on the ml-training example: (baseline, best, first experiment that improved)."""
    from orchestrator.contract.load import read_contract_file
    from tests.test_examples import _example_repo

    repo = _example_repo(tmp, "ml-training")
    path = repo / "contracts" / "ml-training.toml"
    data = read_contract_file(path)
    data["agent"] = {"kind": "tuner", **data["agent"]["tuner"]}
    over = {"budget.max_experiments": experiments, "budget.max_hours": None, "budget.baseline_repeats": 1,
            "sandbox.env": {"TRAIN_SECONDS": "10", "OMP_NUM_THREADS": "1"}}  # fmt: skip
    run = start_run(repo, "tune", build_contract(data, over, str(path)), "bench", DockerSandbox(),
                    say=lambda _m: None, backoff=Backoff(1, 5))  # fmt: skip
    run.execute()
    exps = run.ledger.experiments()
    keeps = [e for e in exps[1:] if e.status == "keep"]
    best = min((e.metric for e in keeps if e.metric is not None), default=exps[0].metric)
    assert exps[0].metric is not None and best is not None
    return exps[0].metric, best, keeps[0].id if keeps else None


SLEEP_S = 8.0


class InstantAgent:
    """A new one-line change each time, at once (or after `think` seconds)."""

    def __init__(self, count: int, think: float = 0.0) -> None:
        self.count, self.think, self.n = count, think, 0

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        if self.n >= self.count:
            return None
        time.sleep(self.think)
        self.n += 1
        path = scratch / "impl.py"
        path.write_text(path.read_text() + f"# change {self.n}\n")
        return Proposal(f"change {self.n}")


def sleep_night(
    tmp: Path, tag: str, slots: int, experiments: int, sleep_s: float, think: float = 0.0
):  # type: ignore[no-untyped-def]
    """A night of sleep-bound experiments on `slots` slots; the Run afterwards."""
    repo = make_repo(tmp / tag, {"impl.py": IMPL})
    patches = make_patch(
        tmp / f"{tag}-patches", "unused.patch", "impl.py", IMPL, IMPL + "#\n"
    ).parent
    contract = build_contract(
        {"implementation": {"paths": ["impl.py"]}, "evaluator": {"command": f"sleep {sleep_s:g}; echo score: 1"},
         "metric": {"name": "score", "goal": "min"}, "agent": {"kind": "replay", "patches": str(patches)},
         "budget": {"parallel": slots, "pipeline": 1, "baseline_repeats": 1}},
        {}, "bench",
    )  # fmt: skip
    run = start_run(
        repo, tag, contract, "bench", DockerSandbox(), say=lambda _m: None, backoff=Backoff(1, 5)
    )
    run.proposals.agent = InstantAgent(experiments, think)
    run.execute()
    return run


def throughput(run) -> float:  # type: ignore[no-untyped-def]
    """Experiments per second after the baseline, from when the first started to when the last ended."""
    exps = [e for e in run.ledger.experiments() if e.id > 0]
    t0 = min(e.ran_from for e in exps)
    t1 = max(e.ran_to for e in exps)
    return len(exps) / (t1 - t0)


def ray_dispatch(tmp: Path, n: int = 20) -> tuple[float, float, float]:
    """(local s, Ray s, Ray − local ms): the same no-op attempt through both executors, interleaved.

    One Ray node on this machine with one slot; both sides start the same hardened
    container on the same engine, so the difference is what Ray adds: the task's
    dispatch, the candidate's tree over the object store, the result back.
    """
    import random

    import ray

    from orchestrator.executors import RunFolder
    from orchestrator.executors.attempt import Attempt
    from orchestrator.executors.config import RayExecutorConfig
    from orchestrator.executors.ray import RayExecutor
    from tests.ray_cluster import Cluster

    repo = make_repo(tmp / "repo", {"impl.py": IMPL})
    patches = tmp / "ray-patches"
    make_patch(patches, "1.patch", "impl.py", IMPL, IMPL.replace("10.0", "9.0"))
    contract = build_contract({"implementation": {"paths": ["impl.py"]}, "evaluator": {"command": COMMAND},
                               "metric": {"name": "score", "goal": "min"},
                               "agent": {"kind": "replay", "patches": str(patches)}}, {}, "bench")  # fmt: skip
    run = start_run(repo, "ray-bench", contract, "bench", DockerSandbox(), say=lambda _m: None)
    cluster = Cluster()
    cluster.start()
    try:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        remote = RayExecutor(RayExecutorConfig(address=cluster.address),
                             RunFolder(run.ws.tag, run.run_dir, run.ws.root))  # fmt: skip
        attempt = Attempt(experiment=1, tree=run.ws.archive(run.ws.best()), contract=contract,
                          env={"HOME": "/tmp"}, labels={"autoresearch.run": run.ws.tag})  # fmt: skip
        sides = {"local": run.executor, "ray": remote}
        times: dict[str, list[float]] = {"local": [], "ray": []}
        for i in range(n + 2):
            order = list(sides)
            random.Random(i).shuffle(order)  # neither side always goes first
            for name in order:
                t0 = time.perf_counter()
                result = sides[name].run(attempt)
                assert result.exit_code == 0, result.output
                if i >= 2:  # the first two warm the workers and the object store
                    times[name].append(time.perf_counter() - t0)
    finally:
        run.executor.close()  # its work folder made ahead
        ray.shutdown()
        cluster.stop()
    local, remote_s = times["local"], times["ray"]
    extra = statistics.median(r - x for r, x in zip(remote_s, local, strict=True)) * 1000
    return statistics.median(local), statistics.median(remote_s), extra


RTT_BENCH = """import statistics, time
from impl import echo
samples = []
for _ in range(3000):
    t0 = time.perf_counter()
    echo(1)
    samples.append((time.perf_counter() - t0) * 1e6)
print(f"rtt_us: {statistics.median(samples):.1f}")
"""

FLOOR_BENCH = """import os, socket, statistics, time
a, b = socket.socketpair()
if os.fork() == 0:  # the other end: what a worker that does nothing would answer
    a.close()
    while data := b.recv(65536):
        b.sendall(data)
    os._exit(0)
b.close()
samples = []
for _ in range(3000):
    t0 = time.perf_counter()
    a.sendall(b"x" * 64)
    a.recv(65536)
    samples.append((time.perf_counter() - t0) * 1e6)
print(f"rtt_us: {statistics.median(samples):.1f}")
"""


def proxied_round_trip(tmp: Path, runtime: str = "runc", floor: bool = False) -> float:
    """The median round trip of one proxied call with a small argument, in a harness-mode sandbox;
    with `floor`, of a bare socket between two processes in the same sandbox (no harness on it)."""
    impl = "def echo(x):\n    return x\n"
    name = f"rtt-{runtime}-{'floor' if floor else 'call'}-{len(list(tmp.glob('rtt-*')))}"
    repo = make_repo(tmp / name, {"impl.py": impl, "bench.py": FLOOR_BENCH if floor else RTT_BENCH})
    contract = build_contract(
        {"implementation": {"paths": ["impl.py"]}, "evaluator": {"command": "python bench.py", "paths": ["bench.py"]},
         "metric": {"name": "rtt_us", "goal": "min"}, "agent": {"kind": "none"},
         "budget": {"baseline_repeats": 1}, "sandbox": {"runtime": runtime}},
        {}, "bench",
    )  # fmt: skip
    run = start_run(repo, name, contract, "bench", DockerSandbox(), say=lambda _m: None)
    run.execute()
    base = run.ledger.get(0)
    assert base is not None and base.metric is not None, base
    return base.metric


def round_trips(tmp: Path, runtime: str, rounds: int = 3) -> tuple[list[float], list[float]]:
    """`rounds` proxied medians and as many floors, interleaved (the machine drifts)."""
    calls, floors = [], []
    for _ in range(rounds):
        calls.append(proxied_round_trip(tmp, runtime))
        floors.append(proxied_round_trip(tmp, runtime, floor=True))
    return calls, floors


def harness_section() -> None:
    """Harness mode (the default): a night's cost per experiment and one experiment end to end,
    each against a bare `docker run`; and one proxied call."""
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        rounds = {mode: night_cost(Path(tmp), 5, 10, mode) for mode in ("harness", "shared")}
        bare, ours = orchestrated_runs(Path(tmp), EXPERIMENTS, "harness")
        rtt = {rt: round_trips(Path(tmp), rt) for rt in ("runc", "runsc")}
    ratio = statistics.median(x / y for x, y in zip(ours, bare, strict=True))
    print("\nharness mode (the evaluator trusted, the candidate in a worker of another user) against "
          "a bare `docker run --rm --network none` of the same command")  # fmt: skip
    print("| measure | ours | bare | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for mode, pairs in rounds.items():
        night = statistics.median(o / b for b, o in pairs)
        print(f"| a night's cost per experiment, {mode}{' (default)' if mode == 'harness' else ''}, "
              f"the agent one ahead (5 rounds of 10, median of the round ratios) | "
              f"{statistics.median(o for _, o in pairs):.3f} s | {statistics.median(b for b, _ in pairs):.3f} s "
              f"| {night:.2f}× | ≤ 1.2× |")  # fmt: skip
    print(f"| one experiment end to end, nothing overlapping (`pipeline = 0`, {EXPERIMENTS} interleaved) | "
          f"{statistics.median(ours):.3f} s | {statistics.median(bare):.3f} s | {ratio:.2f}× | (beside it) |")  # fmt: skip
    for rt, (calls, floors) in rtt.items():
        print(f"| one proxied call with a small argument, median of 3000 ({rt}; 3 runs, their median "
              f"and range) | {_spread(calls)} | {_spread(floors)} (a bare socket between two processes "
              f"in the same sandbox) | {statistics.median(calls) / statistics.median(floors):.1f}× | ≤ 200 µs |")  # fmt: skip


def _spread(us: list[float]) -> str:
    return f"{statistics.median(us):.0f} µs ({min(us):.0f}–{max(us):.0f})"


def main() -> int:
    bare_runs(2)  # warm the engine and the page cache
    harness_section()
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        bare, ours = orchestrated_runs(Path(tmp), EXPERIMENTS)
    b, o = statistics.median(bare), statistics.median(ours)
    # Each experiment is paired with the bare run just before it: the median of those
    # ratios is robust to the machine drifting during the run.
    ratio = statistics.median(x / y for x, y in zip(ours, bare, strict=True))
    print(
        f"\norchestration overhead, shared mode, no-op evaluator, {EXPERIMENTS} experiments each (medians, same run)"
    )
    print("| measure | median s | ratio |")
    print("| --- | --- | --- |")
    print(f"| bare `docker run --rm --network none` | {b:.3f} | 1.00 |")
    print(
        f"| one full experiment (propose → freeze → sandbox → decide → record) | {o:.3f} | {ratio:.2f} |"
    )
    print(f"ratio = median of {len(ours)} paired ratios (ratio of the medians: {o / b:.2f})")
    print(f"target ≤ 1.20: {'met' if ratio <= 1.2 else 'NOT met'}")

    print(
        f"\nnoise: evaluator score = base + N(0, σ=1) by the run's seed; baseline ×{NOISE['budget.baseline_repeats']}, "
        f"candidates ×{NOISE['metric.repeats']}, z = {NOISE['metric.z']}"
    )
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        kept = seed_only_night(Path(tmp))
    false_keeps, true_rate = simulated_rates()
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| seed-only changes kept, one real night of 40 | {kept} | ≤ 2 |")
    print(f"| seed-only changes kept per 40, simulated (200 nights) | {false_keeps:.2f} | ≤ 2 |")
    print(f"| real 3σ improvements kept, simulated (2000 trials) | {true_rate:.1%} | ≥ 90% |")

    print(
        f"\nparallel slots: sleep-bound experiments ({SLEEP_S:g} s each), 8 per night, the agent instant"
    )
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        one = throughput(sleep_night(Path(tmp), "one", 1, 8, SLEEP_S))
        four = throughput(sleep_night(Path(tmp), "four", 4, 8, SLEEP_S))
        think = sleep_night(Path(tmp), "think", 1, 10, SLEEP_S / 2, think=SLEEP_S / 4)
    info = think.ledger.run()
    assert info is not None and info.duty_cycle is not None
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(
        f"| throughput, 4 slots vs 1 (experiments/s: {four:.3f} vs {one:.3f}) | {four / one:.2f}× | ≥ 3.6× |"
    )
    print(f"| duty cycle, 1 slot, the agent thinks {SLEEP_S / 4:g} s per {SLEEP_S / 2:g} s experiment (10) "
          f"| {info.duty_cycle:.1%} | ≥ 95% |")  # fmt: skip

    bench_proposers.section()
    bench_tuner.section()
    bench_search.section()
    bench_search.portfolio_section()
    bench_screen.section()
    bench_scale.section()
    bench_gateway.section()
    bench_suites.section()

    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        local_s, ray_s, extra_ms = ray_dispatch(Path(tmp))
    print(
        "\nRay executor: the same no-op attempt, local vs one Ray node on this machine (20 each, interleaved)"
    )
    print("| measure | result | target |")
    print("| --- | --- | --- |")
    print(f"| Ray dispatch overhead per experiment (median of paired differences; "
          f"{ray_s:.3f} s vs {local_s:.3f} s) | {extra_ms:.0f} ms | ≤ 50 ms |")  # fmt: skip

    print("\nml-training, offline tuner (TPE), TRAIN_SECONDS=10, 8 experiments")
    with tempfile.TemporaryDirectory(prefix="autoresearch-bench-") as tmp:
        base, best, first = tuner_on_ml_training(Path(tmp))
    print("| baseline val_bpb | best val_bpb | first improvement at experiment | target |")
    print("| --- | --- | --- | --- |")
    print(
        f"| {base:.4f} | {best:.4f} | {first if first is not None else 'none'} | improves within 8 |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
