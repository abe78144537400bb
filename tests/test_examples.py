"""Every shipped example, end to end in the sandbox: the baseline plus its replay patches —
a real improvement written by hand must be kept, a broken or worse change must not."""

from __future__ import annotations

import importlib.util
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.contract.load import build_contract, read_contract_file
from orchestrator.night import Backoff
from orchestrator.runs import start_run
from tests.conftest import git

ROOT = Path(__file__).resolve().parents[1]


def _example_repo(tmp_path: Path, name: str) -> Path:
    """A fresh repository holding just one example, as a user would copy it."""
    repo = tmp_path / name
    for rel in (f"examples/{name}", f"evaluators/{name}", f"contracts/{name}.toml"):
        src, dst = ROOT / rel, repo / rel
        if not src.exists():  # the test-suite example's judge is the project's own tests
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "example")
    return repo


def _run(repo: Path, name: str, sandbox, **over: object):  # type: ignore[no-untyped-def]
    path = repo / "contracts" / f"{name}.toml"
    data = read_contract_file(path)
    data["agent"] = {"kind": "replay", "patches": str(repo / "examples" / name / "patches")}
    contract = build_contract(data, {"budget.max_experiments": None, **over}, str(path))
    run = start_run(
        repo, "example", contract, str(path), sandbox, say=lambda _m: None, backoff=Backoff(0.5, 2)
    )
    run.execute()
    return run


@pytest.mark.parametrize(
    ("name", "over", "statuses"),
    [
        ("latency", {"budget.baseline_repeats": 1}, ["keep", "keep", "keep", "crash", "discard"]),
        ("ml-training", {"budget.baseline_repeats": 1, "sandbox.env": {"TRAIN_SECONDS": "4", "OMP_NUM_THREADS": "1"}},
         ["keep", "keep", "crash"]),
        ("flaky-test", {}, ["keep", "keep", "discard"]),
        ("refactor", {}, ["keep", "keep", "discard"]),
        ("config-under-load", {"budget.baseline_repeats": 2}, ["keep", "keep", "discard"]),
        ("ci-time", {}, ["keep", "keep", "discard"]),
        ("prompt-optimization", {"budget.baseline_repeats": 1}, ["keep", "keep", "discard", "discard"]),
        ("test-suite", {}, ["keep", "keep", "discard", "discard", "discard", "discard"]),
    ],
)  # fmt: skip
def test_example_end_to_end(
    tmp_path: Path, sandbox, fake_llm: str, name: str, over: dict[str, object], statuses: list[str]
) -> None:
    repo = _example_repo(tmp_path, name)
    run = _run(repo, name, sandbox, **over)
    exps = run.ledger.experiments()
    assert [e.status for e in exps] == statuses, [(e.description, e.status, e.reason) for e in exps]
    goal = run.contract.metric.goal
    assert (exps[1].metric < exps[0].metric) if goal == "min" else (exps[1].metric > exps[0].metric)
    if name in ("flaky-test", "refactor"):  # better on the metric, but it broke a test
        assert "constraint `tests_failed == 0` violated" in exps[2].reason
    if name == "test-suite":  # the project's own 455 tests judge; each break is caught, lies or not
        assert exps[0].metrics["tests_total"] == 455 and exps[0].metrics["tests_failed"] == 0
        assert all("tests_failed == 0` violated" in (e.reason or "") for e in exps[2:]), exps
        assert "writes a metric line" in " ".join(exps[3].flags)
        assert "claims equality" in " ".join(exps[4].flags)
        assert "plants a file" in " ".join(exps[5].flags)
        assert "CandidateLies" in (run.ledger.exp_dir(4) / "output.log").read_text()
    if name == "ci-time":  # faster, but it skipped a test
        assert "constraint `tests_missing == 0` violated" in exps[2].reason
    if name == "prompt-optimization":  # more accurate, but at twice the tokens the gateway counted
        assert exps[2].metric > exps[1].metric
        assert "constraint `gateway.llm.tokens <= 1.1 * baseline` violated" in exps[2].reason
        assert exps[2].metrics["gateway.llm.tokens"] > 1.5 * exps[0].metrics["gateway.llm.tokens"]
        assert exps[3].metric == 0.0 and exps[0].metrics["gateway.llm.requests"] == 60
        assert run.ledger.total_cost() > 0  # the runs' LLM calls count in budget.max_cost_usd


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The prompt-optimization example's fake Messages API on host loopback, named as the
    service's upstream (`upstream_env`), with a fake key: no example reaches a real API."""
    spec = importlib.util.spec_from_file_location(
        "fake_llm", ROOT / "examples" / "prompt-optimization" / "fake_llm.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = module.server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "offline-test-key")
    yield url
    server.shutdown()
    server.server_close()


def test_ml_training_scores_sealed_weights(tmp_path: Path, sandbox) -> None:
    repo = _example_repo(tmp_path, "ml-training")
    run = _run(repo, "ml-training", sandbox, **{"budget.baseline_repeats": 1, "budget.max_experiments": 0,
               "sandbox.env": {"TRAIN_SECONDS": "2"}})  # fmt: skip
    base = run.ledger.get(0)
    assert (
        base.status == "keep" and 0.5 < base.metric < 8.0
    )  # bits per byte of an untrained-ish model
    assert "steps:" in (run.ledger.exp_dir(0) / "output.log").read_text()
    assert "val_bpb:" in (run.ledger.exp_dir(0) / "score.log").read_text()


def test_every_contract_parses() -> None:
    for path in sorted((ROOT / "contracts").glob("*.toml")):
        build_contract(read_contract_file(path), {}, str(path))
