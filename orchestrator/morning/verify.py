"""`autoresearch verify`: do the merged wins still win?

Each merged commit and the commit it was merged onto (its parent) are re-run,
interleaved, in the same image (by content id) with the same evaluator (by the
hash of its snapshot). A win reproduces when it still beats its parent by more
than the noise band: what the decision claimed. The drift of the absolute level
(a time-budgeted evaluator's moves with the machine's load) is reported apart,
never mistaken for a lost win.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from orchestrator.contract.metrics import measured
from orchestrator.errors import UserError
from orchestrator.experiment import Experiment
from orchestrator.night.decision import combine, gain
from orchestrator.night.measuring import Measuring
from orchestrator.runs import evaluator_hash


@dataclass(frozen=True)
class Check:
    experiment: int
    commit: str
    recorded: float
    """The metric the ledger recorded for the win."""
    now: float | None
    """Its metric now (None: it crashed, or printed no metric)."""
    band: float
    why: str
    parent_now: float | None = None
    gain_recorded: float = 0.0
    """How much it beat its parent by when it was kept (in the goal's direction)."""
    gain_now: float | None = None
    """How much it beats its parent by now, both re-run side by side."""

    @property
    def reproduces(self) -> bool:
        return self.gain_now is not None and self.gain_now > self.band

    @property
    def drift(self) -> float | None:
        """How far the absolute level moved since the night (not a verdict)."""
        return None if self.now is None else self.now - self.recorded


def verify(m: Measuring, commit: str | None = None) -> list[Check]:
    """Each merged win of the run (or the one whose commit starts with `commit`), re-run beside
    its parent. Raises UserError when the image or the evaluator changed since the night."""
    info = m.ledger.run()
    assert info is not None
    image = m.contract.sandbox.image
    now_id = m.executor.image_id(image)
    if info.image_id and now_id != info.image_id:
        raise UserError(
            f"image {image} is not the one the run used (was {info.image_id[:19]}, now {now_id[:19]}) "
            "— restore that image to verify"
        )
    if evaluator_hash(m.ledger.dir) != info.evaluator_hash:
        raise UserError(
            f"the evaluator snapshot in {m.ledger.dir} changed since the run — restore it to verify"
        )
    exps = m.ledger.experiments()
    merged = [e for e in exps if e.merged and e.merged_sha and e.metric is not None]
    if commit is not None:
        merged = [e for e in merged if e.merged_sha and e.merged_sha.startswith(commit)]
        if not merged:
            raise UserError(
                f"no merged experiment of run {info.tag} has commit {commit} — see `autoresearch status`"
            )
    band = max(m.band(), 1e-9)
    try:
        with m.leased():  # the same number of GPUs the night's experiments had
            return [_recheck(m, e, exps, band) for e in merged]
    finally:
        m.close()


def _recheck(m: Measuring, e: Experiment, exps: list[Experiment], band: float) -> Check:
    """The win and its parent, re-run interleaved (`metric.repeats` each)."""
    assert e.merged_sha is not None and e.metric is not None
    parent_sha = m.ws.first_parent(e.merged_sha)
    parent = next((x for x in exps if x.merged_sha == parent_sha), None) or exps[0]
    goal = m.contract.metric.goal
    recorded_gain = gain(goal, parent.metric if parent.metric is not None else e.metric, e.metric)
    runs: dict[str, list[float | None]] = {"parent": [], "win": []}
    for i in range(m.contract.metric.repeats):
        for side, sha in (("parent", parent_sha), ("win", e.merged_sha)):
            runs[side].append(_value(m, replace(e, commit_sha=sha), f"verify.{side}.{i}.log"))
    now, before = _combined(m, runs["win"]), _combined(m, runs["parent"])
    why = "crashed now" if None in runs["win"] or None in runs["parent"] else ""
    now_gain = None if now is None or before is None else gain(goal, before, now)
    return Check(e.id, e.merged_sha, e.metric, now, band, why, before, recorded_gain, now_gain)


def _value(m: Measuring, target: Experiment, log: str) -> float | None:
    r = m.measure(target, log)
    return None if r.failed else measured(r).get(m.contract.metric.name)


def _combined(m: Measuring, values: list[float | None]) -> float | None:
    if None in values:
        return None
    got = combine([{"v": v} for v in values if v is not None], m.contract.metric.aggregate)
    return got.get("v")


def verify_line(c: Check) -> str:
    """One merged win: does it still beat its parent by more than the band; and the drift."""
    now = "-" if c.now is None else f"{c.now:.6g}"
    shown = "-" if c.gain_now is None else f"{c.gain_now:.6g}"
    drift = "" if c.drift is None else f"  (level drift {c.drift:+.6g})"
    verdict = (
        "reproduces: still beats its parent"
        if c.reproduces
        else f"DIFFERS: no longer beats its parent {c.why}".rstrip()
    )
    return (
        f"{c.commit[:12]}  #{c.experiment}  recorded {c.recorded:.6g}  now {now}  "
        f"beats its parent by {shown} (recorded {c.gain_recorded:.6g}, band ±{c.band:.3g})  "
        f"{verdict}{drift}"
    )
