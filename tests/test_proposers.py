"""Several proposals at once: the command agent's processes and Claude's conversations overlap,
a tree already run is not run again, a kill in the middle loses nothing, a stop rule stops
what is in flight, and the history an agent is shown stays bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.agents.context import LINEAGE, render_history
from orchestrator.experiment import Experiment
from orchestrator.night.proposers import capacity
from orchestrator.runs import read_run
from tests.conftest import IMPL, contract_for, git, make_patch, make_repo
from tests.fake_anthropic import FakeAnthropic, edit, tool

CLI = """
import os, pathlib, re, sys, time
log = pathlib.Path(sys.argv[1])
n = os.environ["AUTORESEARCH_EXPERIMENT"]
prompt = pathlib.Path(os.environ["AUTORESEARCH_PROMPT"]).read_text()
(log / f"prompt-{n}.md").write_text(prompt)
began = time.time()
time.sleep(float(sys.argv[2]))
impl = pathlib.Path("impl.py")
text = impl.read_text()
if sys.argv[3] == "lower":
    value = float(re.search(r"OFFSET = ([0-9.]+)", text).group(1))
    text = text.replace(f"OFFSET = {value}", f"OFFSET = {value - 0.5}", 1)
impl.write_text(text + f"# idea {n}\\n")
with open(log / "spans", "a") as f:
    f.write(f"{n} {began} {time.time()}\\n")
print(f"DESCRIPTION: idea {n}")
"""


def _command(tmp_path: Path, think: float, how: str = "comment") -> dict[str, object]:
    log = tmp_path / "agent-log"
    log.mkdir(exist_ok=True)
    cli = tmp_path / "cli.py"
    cli.write_text(CLI)
    return {"kind": "command", "command": f"{sys.executable} {cli} {log} {think} {how}",
            "timeout_s": 120, "on_host": True}  # fmt: skip


def _spans(tmp_path: Path) -> list[tuple[float, float]]:
    lines = (tmp_path / "agent-log" / "spans").read_text().split("\n")
    return [(float(b), float(e)) for _n, b, e in (ln.split() for ln in lines if ln)]


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    return max(sum(b <= t < e for b, e in spans) for t, _ in spans)


def test_the_command_agent_makes_several_proposals_at_once(
    repo: Path, tmp_path: Path, start
) -> None:
    contract = contract_for(Path("x"), agent=_command(tmp_path, 1.5), **{
        "budget.parallel": 2, "budget.pipeline": 1, "budget.max_experiments": 5,
        "budget.baseline_repeats": 1})  # fmt: skip
    run = start(contract)
    assert run.execute() == "max experiments reached (5)"
    exps = run.ledger.experiments()
    assert [e.id for e in exps] == [0, 1, 2, 3, 4, 5] and all(e.phase == "done" for e in exps)
    assert _most_at_once(_spans(tmp_path)) >= 2  # their thinking overlapped
    prompts = [p.read_text() for p in (tmp_path / "agent-log").glob("prompt-*.md")]
    assert any("BEING PROPOSED by another proposer" in p for p in prompts)


def test_no_more_than_one_proposal_per_slot_until_three_have_ended(
    repo: Path, tmp_path: Path, start
) -> None:
    """Before any proposal has ended nothing says how long the agent thinks: a night of quick
    experiments and a slow agent keeps one proposal per slot (plus the pipeline) until three
    have ended, then grows from what they took."""
    contract = contract_for(Path("x"), agent=_command(tmp_path, 2.0), **{
        "budget.parallel": 4, "budget.pipeline": 1, "budget.max_experiments": 12,
        "budget.baseline_repeats": 2})  # fmt: skip
    run = start(contract)
    assert run.execute() == "max experiments reached (12)"
    spans = sorted(_spans(tmp_path), key=lambda s: s[1])
    third = spans[2][1]
    early = [s for s in spans if s[0] < third]
    assert max(sum(b <= t < e for b, e in early) for t, _ in early) <= 4 + 1, early
    assert run.proposers.peak_early <= 4 + 1 and run.proposers.peak > 4 + 1  # then it grew


def test_claude_holds_several_conversations_at_once(
    repo: Path, start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with FakeAnthropic() as api:
        api.delay_s = 1.0
        for k in range(4):
            api.message(edit("insert", path="impl.py", insert_line=0, insert_text=f"# idea {k}\n"),
                        tool("submit", description=f"idea {k}", hypothesis="a comment"))  # fmt: skip
        agent = {"kind": "anthropic", "base_url": api.base_url, "api_retries": 0}
        contract = contract_for(Path("x"), agent=agent, **{
            "budget.parallel": 2, "budget.pipeline": 1, "budget.max_experiments": 4,
            "budget.baseline_repeats": 1})  # fmt: skip
        run = start(contract)
        assert run.execute() == "max experiments reached (4)"
        assert api.most_active >= 2
    exps = run.ledger.experiments()[1:]
    assert sorted(e.description for e in exps) == [f"idea {k}" for k in range(4)]
    assert all(e.cost_usd and e.cost_usd > 0 for e in exps)  # each conversation's own cost
    assert run.ledger.total_cost() == pytest.approx(sum(e.cost_usd or 0 for e in exps))
    assert any(t.get("name") == "history" for t in api.requests[0]["tools"])


def test_a_tree_already_run_is_not_run_again(repo: Path, tmp_path: Path, start) -> None:
    worse = IMPL.replace("10.0", "12.0")
    make_patch(tmp_path / "p", "01-worse.patch", "impl.py", IMPL, worse)
    make_patch(tmp_path / "p", "02-the-same-again.patch", "impl.py", IMPL, worse)
    run = start(contract_for(tmp_path / "p", **{"budget.baseline_repeats": 1}))
    run.execute()
    first, again = run.ledger.get(1), run.ledger.get(2)
    assert first.status == "discard" and again.status == "duplicate"
    assert "the same tree as experiment 1 (discard, score 12)" in again.reason
    assert again.metric == first.metric and again.wall_s is None  # no sandbox ran
    assert not (run.ledger.exp_dir(2) / "output.log").exists()
    assert "duplicate" in (run.run_dir / "results.tsv").read_text()


def _agent_processes(run_dir: Path) -> list[int]:
    return list(_agent_experiments(run_dir))


def _agent_experiments(run_dir: Path) -> dict[int, bytes]:
    """The host processes of the run's agent: pid → the experiment each works for."""
    mark = f"AUTORESEARCH_AGENT_OF={run_dir}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        if mark in env:
            exp = [v for v in env if v.startswith(b"AUTORESEARCH_EXPERIMENT=")]
            found[int(proc.name)] = exp[0] if exp else b""
    return found


def _gone(pids: Callable[[], list[int]], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not pids()


def test_a_stop_rule_stops_the_proposals_in_flight(repo: Path, tmp_path: Path, start) -> None:
    contract = contract_for(Path("x"), agent=_command(tmp_path, 60), **{
        "budget.parallel": 2, "budget.pipeline": 1, "budget.max_hours": 0.001,
        "budget.baseline_repeats": 1})  # fmt: skip
    run = start(contract)
    began = time.monotonic()
    assert run.execute().startswith("max hours reached")
    assert time.monotonic() - began < 30  # not the agent's 60 s
    assert _agent_processes(run.run_dir) == []
    assert [e.id for e in run.ledger.experiments()] == [0]  # the stopped proposals left no row


def test_a_kill_during_concurrent_proposals_resumes_with_nothing_lost(tmp_path: Path) -> None:
    from tests.conftest import BENCH

    repo = make_repo(tmp_path / "project", {"impl.py": IMPL, "bench.py": BENCH})
    agent = _command(tmp_path, 2.0, "lower")
    contract = tmp_path / "contract.toml"
    contract.write_text(
        '[implementation]\npaths = ["impl.py"]\n'
        '[evaluator]\ncommand = "python bench.py"\npaths = ["bench.py"]\n'
        '[metric]\nname = "score"\ngoal = "min"\n'
        "[budget]\nseconds = 30\nparallel = 2\npipeline = 1\nbaseline_repeats = 1\n"
        "max_experiments = 5\n"
        '[sandbox]\nmemory = "256m"\npids = 64\n'
        f'[agent]\nkind = "command"\ncommand = "{agent["command"]}"\ntimeout_s = 120\non_host = true\n'
    )

    def cli(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "orchestrator", "--repo", str(repo), *args],
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip

    proc = cli("run", str(contract), "--tag", "k")
    run_dir = repo / ".autoresearch" / "k"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(set(_agent_experiments(run_dir).values())) < 2:
        time.sleep(0.1)
    assert len(set(_agent_experiments(run_dir).values())) >= 2, "two proposals in flight"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the agent's commands die with the orchestrator (each guard sees its pipe close)
    assert _gone(lambda: _agent_processes(run_dir), within_s=15), _agent_experiments(run_dir)
    ledger, _c, _ws = read_run(repo, "k")
    assert any(e.phase == "proposing" for e in ledger.experiments())
    ledger.close()

    resumed = cli("resume", "k")
    _out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err.decode()[-2000:]
    ledger, _c, _ws = read_run(repo, "k")
    exps = ledger.experiments()
    assert [e.id for e in exps] == list(range(6)) and all(e.phase == "done" for e in exps)
    merged = [e.merged_sha for e in exps if e.merged]
    assert merged and len(set(merged)) == len(merged)  # nothing merged twice
    log = git(repo, "log", "--format=%s", "main..autoresearch/k").split("\n")
    assert len([s for s in log if s]) == len(merged)


def _exp(i: int, status: str, metric: float | None, reason: str = "r") -> Experiment:
    return Experiment(
        id=i, phase="done", parent="p", commit_sha="c", description=f"idea {i}", hypothesis="",
        status=status, reason=reason, metric=metric, metrics={}, exit_code=0, timed_out=False,
        oom_killed=False, wall_s=1.0, cpu_s=1.0, peak_memory_bytes=0, workspace_bytes=0,
        disk_full=False, signal=None, loc=10, cost_usd=None, usage={}, samples=[],
        merged=status == "keep", merged_sha=None, infra_retries=0, started=0.0, finished=1.0,
    )  # fmt: skip


def _night(n: int) -> list[Experiment]:
    out = [_exp(0, "keep", 10.0)]
    for i in range(1, n + 1):
        if i % 50 == 0:
            out.append(_exp(i, "keep", 10.0 - i / 100))
        elif i % 7 == 0:
            out.append(_exp(i, "crash", None, f"exit code 1 (kind {i % 3})"))
        else:
            out.append(_exp(i, "discard", 10.0 + i / 1000))
    return out


def test_the_history_names_the_latest_keeps_and_failures_and_stays_bounded() -> None:
    exps = _night(1000)
    shown = render_history(exps, {}, full="the `history` tool")
    for e in exps[-20:]:
        assert f"#{e.id} {e.status}" in shown
    keeps = [e for e in exps if e.id and e.status == "keep"]
    for e in keeps[-LINEAGE - 1 :]:  # the recent one in full, the ten before it in brief
        assert f"#{e.id} " in shown
    assert "#13 discard" not in shown and "#50 " not in shown  # an old miss, an old keep: counted
    assert (
        f"the best's lineage in brief ({len(keeps) - 1}; each one and its diff: the `history` tool)"
        in shown
    )
    assert "baseline 10 → #950 0.5" in shown and "9 keeps #50…#450 not named" in shown
    assert "- discard: " in shown and "- crash: " in shown and "the `history` tool" in shown
    assert "closest to winning: #1 10.001" in shown and "exit code 1" in shown
    at50 = render_history(_night(50), {})
    assert len(shown) <= 1.5 * len(at50)


def test_a_night_in_which_every_experiment_keeps_has_a_bounded_history() -> None:
    def every_keep(n: int) -> list[Experiment]:
        return [_exp(i, "keep", 10.0 - i / 1000) for i in range(n + 1)]

    at50, at1000 = render_history(every_keep(50), {}), render_history(every_keep(1000), {})
    assert len(at1000) <= 1.5 * len(at50), (len(at1000), len(at50))
    assert "#1000 keep" in at1000 and "#970 " in at1000 and "#1 " not in at1000


def test_capacity_follows_how_long_the_agent_thinks() -> None:
    assert capacity(4, 1, None, None) == 5  # before anything is known: one per slot, plus one
    assert capacity(4, 1, 0.1, 10.0) == 6  # a quick agent: barely more
    assert capacity(8, 1, 20.0, 10.0) == 8 + 1 + 20  # thinks twice as long: two per slot ahead,
    # and a margin
    assert capacity(2, 1, 1000.0, 1.0) == 2 + 1 + 8  # never more than 4 per slot
    assert capacity(2, 0, 1000.0, 1.0) == 2  # pipeline 0: only ever when a slot is idle


SLEEPY_BENCH = """import os, time
from impl import score
time.sleep(float(os.environ.get("TRAIN_SECONDS", "1")))
print(f"score: {score():.6f}")
"""


def test_a_screened_out_candidate_never_reaches_the_full_run(tmp_path: Path, sandbox) -> None:
    from orchestrator.night import Backoff
    from orchestrator.runs import start_run

    repo = make_repo(tmp_path / "project", {"impl.py": IMPL, "bench.py": SLEEPY_BENCH})
    make_patch(tmp_path / "p", "01-worse.patch", "impl.py", IMPL, IMPL.replace("10.0", "12.0"))
    make_patch(tmp_path / "p", "02-better.patch", "impl.py", IMPL, IMPL.replace("10.0", "5.0"))
    contract = contract_for(tmp_path / "p", **{
        "budget.baseline_repeats": 1, "sandbox.env": {"TRAIN_SECONDS": "3"},
        "screen": {"env": {"TRAIN_SECONDS": "0"}, "seconds": 10, "margin": 0.5}})  # fmt: skip
    run = start_run(repo, "s", contract, "test", sandbox, say=lambda _m: None,
                    backoff=Backoff(0.1, 0.5))  # fmt: skip
    run.execute()
    base, worse, better = (run.ledger.get(i) for i in range(3))
    assert base.status == "keep" and base.metrics["screen.score"] == 10.0
    assert worse.status == "discard" and worse.reason.startswith("screened out: score 12 on the")
    assert "the best's 10" in worse.reason and "no full run" in worse.reason
    d = run.ledger.exp_dir(1)
    assert (d / "screen.log").exists() and not (d / "output.log").exists()  # never ran in full
    assert worse.metric is None and worse.metrics["screen.score"] == 12.0
    assert better.status == "keep" and better.metric == 5.0
    assert better.reason.startswith("screen 5; ") and better.metrics["screen.score"] == 5.0
    # the screen is the cheap run: 3 s of training less, many times a container start's spread
    assert better.metrics["screen.wall_s"] < better.wall_s
