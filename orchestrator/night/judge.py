"""Measuring and judging one candidate: repeats, noise, constraints, confirmation.

The candidate runs `metric.repeats` times (the baseline `budget.baseline_repeats`
times); each metric is aggregated (median by default). The baseline's spread is
the noise σ, and a win must clear max(min_improvement, z·σ). With
`metric.confirm`, a winner runs once more with a fresh seed and must win again.
Any crashed repeat makes the candidate a crash. With a `[screen]`, one cheap run
comes first: a candidate whose screen score is worse than the best's by more than
the margin is discarded there, without a full run (its figures are `screen.*`
metrics). The decision itself stays the pure function in `decision.py`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from orchestrator.contract.metrics import measured
from orchestrator.contract.model import Contract
from orchestrator.experiment import Experiment, best_holder
from orchestrator.ledger import Ledger
from orchestrator.night.decision import (
    Best,
    Decision,
    Outcome,
    combine,
    decide,
    gain,
    noise_band,
)
from orchestrator.night.runner import Runner
from orchestrator.sandbox import ContainerResult

SCREEN = "screen."
"""The prefix of the screen run's figures among an experiment's metrics."""


def screen_contract(c: Contract) -> Contract | None:
    """The contract a screen run runs under: the screen's budget, its env over the sandbox's."""
    sc = c.screen
    if sc is None:
        return None
    budget = c.budget.model_copy(update={"seconds": sc.seconds or c.budget.seconds})
    sandbox = c.sandbox.model_copy(update={"env": {**c.sandbox.env, **sc.env}})
    return c.model_copy(update={"budget": budget, "sandbox": sandbox})


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    metrics: dict[str, float]
    result: ContainerResult
    """The run whose trusted figures are recorded (the failing one, if any failed)."""
    samples: list[float]
    """The primary metric of each run (confirmation included)."""


class Judge:
    def __init__(self, contract: Contract, ledger: Ledger, runner: Runner) -> None:
        self.contract = contract
        self.ledger = ledger
        self.runner = runner
        self.cheap = screen_contract(contract)
        """The contract of the screen run (its budget and environment), if there is a screen."""

    def sigma(self) -> float | None:
        base = self.ledger.get(0)
        samples = base.samples if base else []
        return statistics.stdev(samples) if len(samples) >= 2 else None

    def band(self) -> float:
        return noise_band(self.contract.metric, self.sigma())

    def best_experiment(self) -> Experiment | None:
        """The experiment that holds the best now (None before the baseline is measured)."""
        return best_holder(self.ledger.experiments())

    def best(self) -> Best:
        best = self.best_experiment()
        assert best is not None and best.metric is not None
        return Best(best.metric, best.loc)

    def judge(self, exp: Experiment) -> Verdict:
        """The screen (when the contract has one), then the full runs."""
        screened: dict[str, float] = {}
        if self.contract.screen is not None:
            out, screened = self._screen(exp)
            if out is not None:
                return out
        v = self._full(exp)
        if not screened:
            return v
        name = self.contract.metric.name
        d = replace(v.decision, reason=f"screen {screened[SCREEN + name]:.6g}; {v.decision.reason}")
        return Verdict(d, {**v.metrics, **screened}, v.result, v.samples)

    def _screen(self, exp: Experiment) -> tuple[Verdict | None, dict[str, float]]:
        """One cheap run: a verdict when it ends the candidate here, and its figures."""
        c, sc, cheap = self.contract, self.contract.screen, self.cheap
        assert sc is not None and cheap is not None
        result = self.runner.measure(exp, "screen.log", cheap)
        crashed = self._single(exp, result, cheap)
        name = c.metric.name
        value = measured(result).get(name)
        if crashed.status == "crash" or value is None:
            why = crashed.reason if crashed.status == "crash" else f"no `{name}` line"
            return Verdict(Decision("crash", f"on the screen: {why}", None), {}, result, []), {}
        figures = {SCREEN + name: value, SCREEN + "wall_s": result.wall_s}
        holder = self.best_experiment() if exp.id else None
        best = holder.metrics.get(SCREEN + name) if holder else None
        if best is None:
            return None, figures
        margin = sc.margin if sc.margin is not None else self.band()
        worse = -gain(c.metric.goal, best, value)
        if worse <= margin:
            return None, figures
        why = (
            f"screened out: {name} {value:.6g} on the screen, the best's {best:.6g} "
            f"(margin {margin:.3g}); no full run"
        )
        return Verdict(Decision("discard", why, None), figures, result, []), figures

    def _full(self, exp: Experiment) -> Verdict:
        c = self.contract
        runs = c.budget.baseline_repeats if exp.id == 0 else c.metric.repeats
        results: list[ContainerResult] = []
        for i in range(runs):
            result = self.runner.measure(exp, "output.log" if i == 0 else f"output.{i}.log")
            results.append(result)
            verdict = self._single(exp, result)
            if verdict.status == "crash":
                return Verdict(verdict, measured(result), result, self._samples(results))
        metrics = combine([measured(r) for r in results], c.metric.aggregate)
        first = results[0]
        outcome = Outcome(0, False, False, metrics, loc=exp.loc)
        baseline = None if exp.id == 0 else (self.ledger.get(0) or exp).metrics
        best = None if exp.id == 0 else self.best()
        decision = decide(outcome, best, c.metric, sigma=self.sigma(), baseline=baseline)
        if decision.status == "keep" and exp.id > 0 and c.metric.confirm:
            again = self.runner.measure(exp, "confirm.log")
            results.append(again)
            decision = self._confirmed(exp, decision, again, best, baseline)
        if len(results) > 1:
            decision = replace(
                decision, reason=f"{decision.reason} [{c.metric.aggregate} of {len(results)} runs]"
            )
        return Verdict(decision, metrics, first, self._samples(results))

    def rebased(self, exp: Experiment) -> Verdict:
        """A stale winner, rebased onto the new best: one run there, merged only if it still wins."""
        result = self.runner.measure(exp, f"rebased.{exp.rebases}.log")
        samples = [*exp.samples, *self._samples([result])]
        crashed = self._single(exp, result)
        screened = {k: v for k, v in exp.metrics.items() if k.startswith(SCREEN)}
        metrics = {**measured(result), **screened}  # its screen, on its first base
        if crashed.status == "crash":
            d = Decision(
                "discard", f"rebased onto the new best, it crashed ({crashed.reason})", exp.metric
            )
            return Verdict(d, exp.metrics, result, samples)
        outcome = Outcome(0, False, False, metrics, loc=exp.loc)
        baseline = (self.ledger.get(0) or exp).metrics
        d = decide(
            outcome, self.best(), self.contract.metric, sigma=self.sigma(), baseline=baseline
        )
        if d.status != "keep":
            d = replace(
                d,
                status="discard",
                reason=f"rebased onto the new best, no longer a win: {d.reason}",
            )
        else:
            d = replace(
                d,
                reason=f"{exp.reason}; rebased onto the new best and still a win ({d.metric:.6g})",
            )
        return Verdict(d, metrics, result, samples)

    def _confirmed(
        self,
        exp: Experiment,
        won: Decision,
        again: ContainerResult,
        best: Best | None,
        baseline: dict[str, float] | None,
    ) -> Decision:
        crashed = self._single(exp, again)
        if crashed.status == "crash":
            return replace(
                won,
                status="discard",
                reason=f"not confirmed: the re-run crashed ({crashed.reason})",
            )
        outcome = Outcome(0, False, False, measured(again), loc=exp.loc)
        second = decide(outcome, best, self.contract.metric, sigma=self.sigma(), baseline=baseline)
        if second.status != "keep":
            return replace(
                won, status="discard", reason=f"not confirmed on a re-run: {second.reason}"
            )
        return replace(won, reason=f"{won.reason}; confirmed ({second.metric:.6g})")

    def _single(
        self, exp: Experiment, r: ContainerResult, contract: Contract | None = None
    ) -> Decision:
        """A crash verdict for one run (with the evaluator's last line), or a placeholder keep."""
        c = contract or self.contract
        outcome = Outcome(
            exit_code=r.exit_code,
            timed_out=r.timed_out,
            oom_killed=r.oom_killed,
            metrics=measured(r),
            budget_s=c.budget.seconds,
            memory_limit=c.sandbox.memory,
            disk_full=r.disk_full,
            disk_limit=c.sandbox.disk,
            crash=r.crash,
        )
        d = decide(outcome, None, c.metric.model_copy(update={"constraints": []}))
        if d.status == "crash" and r.exit_code not in (0, None) and not r.timed_out and not r.crash:
            last = next((ln.strip() for ln in reversed(r.output.splitlines()) if ln.strip()), "")
            if last:  # the evaluator's last word is usually the why ("wrong answer: ...")
                d = replace(d, reason=f"{d.reason}: {last[:160]}")
        return d

    def _samples(self, results: list[ContainerResult]) -> list[float]:
        name = self.contract.metric.name
        return [m[name] for m in (measured(r) for r in results) if name in m]
