"""The tuner: Optuna ask/tell over module-level constants of the implementation.

Works offline, with no key. The search space is the contract's `[agent.space]`;
one trial is one experiment. Constants are rewritten in place: the assignment is
located with `ast` and only the value's characters are replaced, so formatting
and comments survive. The study lives in the run folder (Optuna's SQLite
storage), so `resume` continues it; a resumed experiment re-uses its trial.
Every finished experiment is told back: its metric when it ran, a failure when
it crashed or was refused. The baseline is told first, as a trial of its own.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from orchestrator.agents import Context, Proposal
from orchestrator.agents.config import CategoricalParam, FloatParam, IntParam, TunerAgentConfig
from orchestrator.contract.model import Contract
from orchestrator.errors import ContractError, ProposalRefused
from orchestrator.experiment import Experiment


def _find(source: str, name: str) -> ast.expr:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name:
            return value
    raise KeyError(name)


def read_constant(source: str, name: str) -> Any:
    """The literal value of module-level `name = <literal>`; KeyError if absent."""
    return ast.literal_eval(_find(source, name))


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(float(f"{value:.6g}"))
    return repr(value)


def write_constant(source: str, name: str, value: Any) -> str:
    """`source` with the value of `name` replaced; everything else byte-identical."""
    node = _find(source, name)
    data = source.encode()
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    assert node.end_lineno is not None and node.end_col_offset is not None
    begin = starts[node.lineno - 1] + node.col_offset
    end = starts[node.end_lineno - 1] + node.end_col_offset
    return (data[:begin] + format_value(value).encode() + data[end:]).decode()


class Tuner:
    in_turn = False

    def __init__(
        self,
        cfg: TunerAgentConfig,
        contract: Contract,
        run_dir: Path,
        say: Callable[[str], None] = print,
    ):
        import optuna

        self.optuna = optuna
        self._lock = threading.Lock()
        self._study_lock = threading.Lock()
        self.cfg = cfg
        self.say = say
        single = [p for p in contract.implementation.paths if not any(c in p for c in "*?[")]
        self.files: dict[str, str] = {}
        for name, param in cfg.space.items():
            f = param.file or (single[0] if len(single) == 1 else None)
            if f is None:
                raise ContractError(
                    f"agent.space.{name}: say which file holds it (`file = ...`); "
                    "implementation.paths names several"
                )
            self.files[name] = f
        self.dists = {name: self._distribution(p) for name, p in cfg.space.items()}
        self.run_dir = run_dir
        self._sampler = self._make_sampler(cfg)
        self._direction: Literal["minimize", "maximize"] = (
            "minimize" if contract.metric.goal == "min" else "maximize"
        )
        self._study: Any = None

    def _make_sampler(self, cfg: TunerAgentConfig) -> Any:
        optuna = self.optuna
        samplers: dict[str, Callable[[], Any]] = {
            # trials still in flight (slots, pipelining) count as poor results: no duplicates
            "tpe": lambda: optuna.samplers.TPESampler(seed=cfg.seed, constant_liar=True),
            "random": lambda: optuna.samplers.RandomSampler(seed=cfg.seed),
            "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=cfg.seed),
        }
        try:
            return samplers[cfg.sampler]()
        except ImportError:
            raise ContractError(
                "agent.sampler = 'cmaes' needs the cmaes package — `pip install cmaes`, or use tpe"
            ) from None

    @property
    def study(self) -> Any:
        """The study in the run folder, made or opened when first used: building the tuner
        writes nothing, so a run refused after it leaves no folder behind."""
        with self._study_lock:
            if self._study is None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.optuna.logging.set_verbosity(self.optuna.logging.WARNING)
                self._study = self.optuna.create_study(
                    study_name="autoresearch",
                    storage=f"sqlite:///{self.run_dir / 'tuner.sqlite'}",
                    load_if_exists=True,
                    direction=self._direction,
                    sampler=self._sampler,
                )
            return self._study

    def _distribution(self, p: FloatParam | IntParam | CategoricalParam) -> Any:
        d = self.optuna.distributions
        if isinstance(p, FloatParam):
            return d.FloatDistribution(p.low, p.high, log=p.log)
        if isinstance(p, IntParam):
            return d.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        return d.CategoricalDistribution(p.choices)

    def _current(self, files: dict[str, str]) -> dict[str, Any]:
        out = {}
        for name, f in self.files.items():
            if f not in files:
                raise ContractError(
                    f"agent.space.{name}: {f} is not an implementation file at the best commit"
                )
            try:
                out[name] = read_constant(files[f], name)
            except (KeyError, ValueError, SyntaxError):
                raise ContractError(
                    f"agent.space.{name}: no module-level `{name} = <literal>` in {f}"
                ) from None
        return out

    def cancel(self) -> None:
        """An ask() takes milliseconds: nothing to stop."""

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        with self._lock:  # several asks in flight: the study sees each (constant liar)
            return self._propose(ctx, scratch)

    def _propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        current = self._current(ctx.files)
        self._sync(ctx.history, current)
        trial = self._trial_for(ctx.experiment, current)
        params = dict(trial.params)
        changed = {k: v for k, v in params.items() if v != current.get(k)}
        for name, value in params.items():
            path = scratch / self.files[name]
            path.write_text(write_constant(path.read_text(), name, value))
        trial.set_user_attr("changed", sorted(changed))  # what `reapply` makes again
        if not changed:
            raise ProposalRefused(
                f"tuner trial #{trial.number} repeats the best values", "(no change)"
            )
        desc = ", ".join(f"{k}={format_value(v)}" for k, v in changed.items())
        return Proposal(
            desc, f"{self.cfg.sampler} trial #{trial.number} over {', '.join(self.cfg.space)}"
        )

    def reapply(self, experiment: int, scratch: Path) -> bool:
        """Write the values `experiment` changed again into `scratch`, a copy of a newer best
        (its lines conflicted with a change merged meanwhile; the same assignment still
        applies, as a rebase would apply its diff). False when no trial of it is known."""
        with self._lock:
            trial = next((t for t in self.study.get_trials(deepcopy=False)
                          if t.user_attrs.get("experiment") == experiment), None)  # fmt: skip
        if trial is None:
            return False
        try:
            changed = trial.user_attrs.get("changed", list(trial.params))
            for name, value in trial.params.items():
                if name not in changed:
                    continue
                path = scratch / self.files[name]
                path.write_text(write_constant(path.read_text(), name, value))
        except (OSError, KeyError, ValueError, SyntaxError):
            return False  # the new best no longer holds that constant
        return True

    def _trial_for(self, experiment: int, current: dict[str, Any]) -> Any:
        states = (self.optuna.trial.TrialState.RUNNING,)
        for t in self.study.get_trials(deepcopy=False, states=states):
            if t.user_attrs.get("experiment") == experiment:
                return t  # a resumed experiment keeps its trial
        if self.cfg.one_at_a_time:
            names = list(self.cfg.space)
            vary = names[(experiment - 1) % len(names)]
            fixed = {k: v for k, v in current.items() if k != vary and self._contains(k, v)}
            self.study.enqueue_trial(fixed, skip_if_exists=False)
        trial = self.study.ask(self.dists)
        trial.set_user_attr("experiment", experiment)
        return trial

    def _contains(self, name: str, value: Any) -> bool:
        try:
            return bool(self.dists[name]._contains(self.dists[name].to_internal_repr(value)))
        except (ValueError, TypeError):
            return False

    def _sync(self, history: list[Experiment], current: dict[str, Any]) -> None:
        """Tell Optuna how every finished experiment went."""
        ts = self.optuna.trial.TrialState
        done = {e.id: e for e in history if e.phase in ("decided", "done")}
        trials = self.study.get_trials(deepcopy=False)
        if not any(t.user_attrs.get("experiment") == 0 for t in trials) and 0 in done:
            base = done[0]
            if base.metric is not None and all(self._contains(k, v) for k, v in current.items()):
                self.study.add_trial(
                    self.optuna.trial.create_trial(
                        params=current,
                        distributions=self.dists,
                        value=base.metric,
                        user_attrs={"experiment": 0},
                    )
                )
        for t in trials:
            e = done.get(t.user_attrs.get("experiment", -1))
            if t.state != ts.RUNNING or e is None:
                continue
            if e.status in ("keep", "discard") and e.metric is not None:
                self.study.tell(t.number, e.metric)
            else:
                self.study.tell(t.number, state=ts.FAIL)
