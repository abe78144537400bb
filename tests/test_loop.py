"""The acceptance runs of the core loop, end to end: real engine, real git."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from tests.conftest import (
    IMPL,
    WrappedSandbox,
    contract_for,
    git,
    make_patch,
    our_containers,
    tree_snapshot,
)

IMPROVED = IMPL.replace("OFFSET = 10.0", "OFFSET = 4.0")


def test_improve_worsen_raise(
    repo: Path, tmp_path: Path, start, docker_client: docker.DockerClient
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-lower-offset.patch", "impl.py", IMPL, IMPROVED)
    make_patch(
        patches, "02-raise-offset.patch", "impl.py", IMPROVED, IMPROVED.replace("4.0", "7.0")
    )
    make_patch(patches, "03-explode.patch", "impl.py", IMPROVED,
               IMPROVED.replace("return OFFSET", 'raise RuntimeError("boom")'))  # fmt: skip
    before = tree_snapshot(repo)
    head = git(repo, "rev-parse", "HEAD").strip()

    run = start(contract_for(patches))
    assert run.execute() == "the agent has nothing more to propose"

    rows = (run.run_dir / "results.tsv").read_text().splitlines()
    assert rows[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"  # the metric by its name
    assert [r.split("\t")[3] for r in rows[1:]] == ["keep", "keep", "discard", "crash"]
    assert [r.split("\t")[4] for r in rows[1:]] == [
        "baseline",
        "01-lower-offset",
        "02-raise-offset",
        "03-explode",
    ]
    assert rows[1].split("\t")[1] == "10.000000" and rows[2].split("\t")[1] == "4.000000"

    # The run branch holds exactly the kept diff, on top of the user's HEAD.
    branch = "autoresearch/t"
    assert git(repo, "rev-parse", f"{branch}~1").strip() == head
    assert git(repo, "diff", "--name-only", head, branch).split() == ["impl.py"]
    assert git(repo, "show", f"{branch}:impl.py") == IMPROVED
    # The user's checkout, index and HEAD are untouched; the evaluator too.
    assert tree_snapshot(repo) == before
    assert git(repo, "rev-parse", "HEAD").strip() == head
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "symbolic-ref", "--short", "HEAD").strip() == "main"
    # Losers' diffs and logs are kept for review; the crash's traceback is in its log.
    exps = run.ledger.experiments()
    assert "RuntimeError: boom" in (run.ledger.exp_dir(3) / "output.log").read_text()
    assert "+OFFSET = 7.0" in (run.ledger.exp_dir(2) / "diff.patch").read_text()
    assert (
        exps[3].reason == "exit code 1: RuntimeError: boom"
    )  # the candidate's error, its own type
    assert all(e.phase == "done" for e in exps)
    assert our_containers(docker_client, **{"autoresearch.run": "t"}) == []


def test_sigterm_ignoring_loop_dies_at_the_budget(repo: Path, tmp_path: Path, start,
                                                  docker_client: docker.DockerClient) -> None:  # fmt: skip
    hog = (
        IMPL
        + "\nimport signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    )
    patches = tmp_path / "patches"
    make_patch(patches, "01-hog.patch", "impl.py", IMPL, hog)
    run = start(contract_for(patches, **{"budget.seconds": 3}))
    run.execute()
    e = run.ledger.get(1)
    assert e.status == "crash" and e.timed_out and e.reason.startswith("timeout")
    assert e.wall_s < 3 + 5
    assert our_containers(docker_client, **{"autoresearch.run": "t"}) == []


def test_container_writes_never_reach_the_host(repo: Path, tmp_path: Path, start) -> None:
    sneaky = IMPL.replace(
        "def score():",
        "def score():\n"
        "    for target in ('bench.py', '/workspace/bench.py', '/etc/evil', '/evil'):\n"
        "        try:\n"
        "            open(target, 'a').write('pwned')\n"
        "            print('WROTE', target)\n"
        "        except OSError as e:\n"
        "            print('REFUSED', target, e.strerror)\n"
        "    open('dropped.py', 'w').write('print(1)')\n"
        "    open('impl.py', 'w').write('OFFSET = -1e9')\n",
    )
    patches = tmp_path / "patches"
    proposed = sneaky.replace("OFFSET = 10.0", "OFFSET = 1.0")
    make_patch(patches, "01-sneaky.patch", "impl.py", IMPL, proposed)
    before = tree_snapshot(repo)
    # Naming bench.py is a flagged move; review "none" merges the winner so what merged is seen.
    run = start(contract_for(patches, review="none"))
    run.execute()
    log = (run.ledger.exp_dir(1) / "candidate.log").read_text()  # the candidate's own output
    assert "WROTE" not in log
    assert log.count("REFUSED") == 4 and "Read-only file system" in log
    assert tree_snapshot(repo) == before
    # What merged is the proposed commit, not what the container rewrote.
    assert git(repo, "show", "autoresearch/t:impl.py") == proposed
    assert "dropped.py" not in git(repo, "ls-tree", "-r", "--name-only", "autoresearch/t")


def test_a_path_outside_implementation_is_refused_before_it_runs(
    repo: Path, tmp_path: Path, start
) -> None:
    patches = tmp_path / "patches"
    make_patch(patches, "01-touch-readme.patch", "README.md", "sample\n", "hacked\n")
    make_patch(
        patches,
        "02-touch-evaluator.patch",
        "bench.py",
        (repo / "bench.py").read_text(),
        "print('score: 0')\n",
    )
    make_patch(patches, "03-fine.patch", "impl.py", IMPL, IMPL.replace("10.0", "9.0"))
    run = start(contract_for(patches))
    run.execute()
    e1, e2, e3 = run.ledger.get(1), run.ledger.get(2), run.ledger.get(3)
    assert e1.status == "refused" and "README.md is outside implementation.paths" in e1.reason
    assert e2.status == "refused" and "bench.py is outside" in e2.reason
    assert e1.wall_s is None and e1.commit_sha is None  # never ran
    assert e3.status == "keep"  # and the night goes on


def test_host_secrets_never_reach_a_container(repo: Path, tmp_path: Path, start,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    secret = "sk-ant-api03-THIS-MUST-NOT-LEAK"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret + "-aws")
    dump = IMPL.replace(
        "def score():",
        "import os\nfor k, v in sorted(os.environ.items()):\n    print(f'{k}={v}')\n"
        "print(open('/proc/self/environ', 'rb').read())\n"
        "try:\n    print(open('/proc/1/environ', 'rb').read())\n"
        "except OSError as e:\n    print('the evaluator is not ours to read:', e)\n\n\ndef score():",
    )
    patches = tmp_path / "patches"
    make_patch(patches, "01-dump-env.patch", "impl.py", IMPL, dump)
    run = start(contract_for(patches))
    run.execute()
    log = (run.ledger.exp_dir(1) / "candidate.log").read_text()
    assert "the evaluator is not ours to read: [Errno 13] Permission denied" in log
    assert "AUTORESEARCH_EXPERIMENT=1" in log  # the dump did run
    for f in run.run_dir.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    assert "ANTHROPIC" not in log and "AWS_" not in log


def test_events_are_json_lines_and_a_run_runs_once(repo: Path, tmp_path: Path, start) -> None:
    import fcntl
    import json

    from orchestrator.errors import UserError

    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    run = start(contract_for(patches))
    with (run.run_dir / "lock").open("a") as held:  # another process holds the run
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="already running"):
            run.execute()
    run.execute()
    events = [json.loads(line) for line in (run.run_dir / "events.jsonl").read_text().splitlines()]
    decided = [e for e in events if e["event"] == "decided"]
    assert [(e["experiment"], e["status"]) for e in decided] == [(0, "keep"), (1, "keep")]
    assert {"timestamp", "level", "metric", "wall_s", "peak_memory_bytes"} <= decided[1].keys()
    assert any(e["event"] == "merged" and e["experiment"] == 1 for e in events)


class FlakySandbox(WrappedSandbox):
    """The real sandbox behind an engine that fails the first `failures` calls."""

    def __init__(self, real, failures: int) -> None:
        super().__init__(real)
        self.failures = failures

    def run(self, spec):
        from orchestrator.errors import InfraError

        if self.failures > 0:
            self.failures -= 1
            raise InfraError(
                "Docker failed during the experiment: ConnectionError: engine went away"
            )
        return self.real.run(spec)


def test_an_infrastructure_failure_is_retried_never_blamed(
    repo: Path, tmp_path: Path, sandbox
) -> None:
    from orchestrator.night import Backoff
    from orchestrator.runs import start_run

    patches = tmp_path / "patches"
    make_patch(patches, "01-lower.patch", "impl.py", IMPL, IMPROVED)
    messages: list[str] = []
    flaky = FlakySandbox(sandbox, 0)
    run = start_run(repo, "f", contract_for(patches), "test", flaky, say=messages.append,
                    backoff=Backoff(0.05, 0.1))  # fmt: skip
    flaky.failures = 3  # the baseline's first tries hit a dead engine
    assert run.execute() == "the agent has nothing more to propose"
    base, first = run.ledger.get(0), run.ledger.get(1)
    assert base.status == "keep" and base.infra_retries == 3
    assert first.status == "keep" and first.infra_retries == 0
    assert sum("infrastructure error (not the candidate's fault)" in m for m in messages) == 3
    assert len((run.run_dir / "results.tsv").read_text().splitlines()) == 1 + 2


def test_an_agent_kind_is_one_union_member_the_none_agent_measures_the_baseline(
    repo: Path, start
) -> None:
    """The smallest kind (agents/none.py + one member in agents/config.py) is built through
    the union like every other: the CLI's choices and the contract know it from there."""
    from orchestrator.agents.config import AGENT_KINDS
    from orchestrator.agents.none import NoAgent
    from orchestrator.flags import contract_flags
    from orchestrator.runs import build_agent

    contract = contract_for(Path("unused"), **{"agent": {"kind": "none"}})
    assert isinstance(build_agent(contract, repo, print), NoAgent)
    assert "none" in AGENT_KINDS

    @contract_flags
    def probe(**_flags: object) -> None: ...

    agent_choices = next(p for p in probe.__click_params__ if p.name == "agent")  # type: ignore[attr-defined]
    assert tuple(agent_choices.type.choices) == AGENT_KINDS
    run = start(contract)
    assert run.execute() == "the agent has nothing more to propose"
    assert [(e.id, e.status) for e in run.ledger.experiments()] == [(0, "keep")]
