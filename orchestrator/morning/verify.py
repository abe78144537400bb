"""`autoresearch verify`: do the merged wins still reproduce?

Each merged commit is re-run in the same image (by content id) with the same
evaluator (by the hash of its snapshot); its metric must land within the noise
band of what the ledger recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from orchestrator.contract.metrics import measured
from orchestrator.errors import UserError
from orchestrator.experiment import Experiment
from orchestrator.night.decision import combine
from orchestrator.night.driver import Night
from orchestrator.runs import evaluator_hash


@dataclass(frozen=True)
class Check:
    experiment: int
    commit: str
    recorded: float
    now: float | None
    band: float
    why: str

    @property
    def reproduces(self) -> bool:
        return self.now is not None and abs(self.now - self.recorded) <= self.band


def verify(night: Night, commit: str | None = None) -> list[Check]:
    info = night.ledger.run()
    assert info is not None
    image = night.contract.sandbox.image
    now_id = night.executor.image_id(image)
    if info.image_id and now_id != info.image_id:
        raise UserError(
            f"image {image} is not the one the run used (was {info.image_id[:19]}, now {now_id[:19]}) "
            "— restore that image to verify"
        )
    if evaluator_hash(night.run_dir) != info.evaluator_hash:
        raise UserError(
            f"the evaluator snapshot in {night.run_dir} changed since the run — restore it to verify"
        )
    merged = [
        e for e in night.ledger.experiments() if e.merged and e.merged_sha and e.metric is not None
    ]
    if commit is not None:
        merged = [e for e in merged if e.merged_sha and e.merged_sha.startswith(commit)]
        if not merged:
            raise UserError(
                f"no merged experiment of run {info.tag} has commit {commit} — see `autoresearch status`"
            )
    band = max(night.judge.band(), 1e-9)
    name, how = night.contract.metric.name, night.contract.metric.aggregate
    leased = night.lease_for_verify()  # the same number of GPUs the night's experiments had
    try:
        checks = _rerun(night, merged, band, name, how)
    finally:
        night.release(leased)
    return checks


def _rerun(night: Night, merged: list[Experiment], band: float, name: str, how: str) -> list[Check]:
    checks = []
    for e in merged:
        assert e.merged_sha is not None and e.metric is not None
        target = replace(e, commit_sha=e.merged_sha)
        results = [
            night.runner.measure(target, f"verify.{i}.log")
            for i in range(night.contract.metric.repeats)
        ]
        value = combine([measured(r) for r in results], how).get(name)
        failed = next((r for r in results if r.failed), None)
        why = "crashed now" if failed else ("no metric" if value is None else "")
        checks.append(Check(e.id, e.merged_sha, e.metric, None if failed else value, band, why))
    return checks
