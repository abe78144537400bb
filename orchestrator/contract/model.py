"""The contract: what may change, how it is scored, and the limits of every run.

One validated pydantic model (`load.py` builds it from a TOML file, flags, or
both). Unknown keys are errors. Paths in a contract are relative to the root of
the git repository that holds it (or, in the flag form, that holds the current
directory).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from orchestrator.agents.config import AgentConfig, AutoAgentConfig
from orchestrator.contract.services import Services
from orchestrator.executors.config import ExecutorConfig, LocalExecutorConfig
from orchestrator.schema import Model as _Model
from orchestrator.schema import Size
from orchestrator.schema import parse_size as parse_size

DEFAULT_IMAGE = "autoresearch/python:3.11"
FORGEABLE = (
    "warning: evaluator.isolation = 'shared': the evaluator runs in the candidate's process, "
    "so scores in this run can be forged — use 'harness' (the default) unless the evaluator "
    "cannot be split"
)
"""Said wherever a score of a shared-mode run is shown: the run's first line, doctor,
status and the report."""


def _repo_relative(value: str) -> str:
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts or value.strip() in ("", "."):
        raise ValueError(f"{value!r} must be a path relative to the repository root, without '..'")
    if any(part == ".git" for part in p.parts):
        raise ValueError(f"{value!r} is inside .git, which is never part of an experiment")
    return str(p)


RepoPath = Annotated[str, BeforeValidator(lambda v: _repo_relative(str(v)))]


class Implementation(_Model):
    paths: list[RepoPath] = Field(min_length=1)
    """Files or globs (repo-relative, `**` allowed) the agent may change. Nothing else may."""

    max_file_bytes: Size = 1024**2
    """Largest file a proposal may write."""

    max_diff_bytes: Size = 1024**2
    """Largest total diff of one proposal."""


class DataMount(_Model):
    source: Path
    """Host path (absolute, or relative to the repo root), mounted read-only."""

    target: str
    """Absolute path inside the container."""

    @field_validator("target")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or ".." in PurePosixPath(v).parts:
            raise ValueError(f"{v!r} must be an absolute container path without '..'")
        return v


class Evaluator(_Model):
    command: str = Field(min_length=1)
    """Shell command run in /workspace; it prints `name: value` or `METRIC name=value` lines."""

    paths: list[RepoPath] = []
    """The evaluator's files: bind-mounted read-only over their place in /workspace."""

    data: list[DataMount] = []
    """Extra read-only mounts (data sets, reference outputs)."""

    isolation: Literal["harness", "shared"] = "harness"
    """`harness`: the evaluator is trusted and runs as a user of its own; the candidate's code
    runs in a worker of another user that it reaches through the harness (imports are
    proxied, only plain data crosses), so no candidate can write its score. `shared`: the
    evaluator and the candidate in one process, as one user — scores can be forged; only for
    an evaluator that cannot be split, and labelled so wherever a score is shown."""

    hidden: list[RepoPath] = []
    """Repo paths the proposing agent never sees (nor the run stage): held-out data, answers.
    The scorer's files and its secret data are hidden without being listed."""

    call_timeout_s: float = Field(default=60, gt=0)
    """Harness mode: the longest one call of the candidate's code may run (seconds); past it the
    call raises TimeoutError on the trusted side (so a test the candidate makes hang fails, and
    the suite goes on); capped by `budget.seconds`."""


class Score(_Model):
    """A sealed scoring stage: a second, fresh container that sees the run stage's
    /results (read-only) and the secret data, but never the implementation."""

    command: str = Field(min_length=1)
    """Run in /workspace, which holds only the scorer's files; prints the metrics that count."""

    paths: list[RepoPath] = []
    """The scorer's files (mounted read-only)."""

    data: list[DataMount] = []
    """Secret data (held-out labels...), mounted read-only here and never in the run stage."""

    seconds: float = Field(default=300, gt=0)
    """Hard wall-clock limit of the scoring stage."""


class Metric(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
    """The primary metric, as the evaluator prints it."""

    goal: Literal["min", "max"]
    """Whether lower (`min`) or higher (`max`) is better."""

    min_improvement: float = Field(default=0.0, ge=0)
    """Smallest change that counts, in the metric's units; smaller gains tie (simplicity rule)."""

    repeats: int = Field(default=1, ge=1)
    """Runs per candidate; their metrics are aggregated."""

    aggregate: Literal["median", "mean", "min", "max"] = "median"
    """How repeated runs combine into one value per metric."""

    z: float = Field(default=2.0, ge=0)
    """A win must beat the best by more than max(min_improvement, z·σ), σ = the baseline's noise."""

    confirm: bool = False
    """Re-run a winner once more (fresh seed) before it merges; it must win again."""

    target: float | None = None
    """Stop the run once the best reaches this value."""

    constraints: list[str] = []
    """Secondary-metric rules, e.g. `p99_ms <= 400`, `tokens <= 1.1 * baseline`, `tests_failed == 0`."""

    @field_validator("constraints")
    @classmethod
    def _parse(cls, v: list[str]) -> list[str]:
        from orchestrator.contract.constraints import parse_constraint

        for text in v:
            parse_constraint(text)
        return v


class Budget(_Model):
    seconds: float = Field(default=300, gt=0)
    """Hard wall-clock limit per experiment; the container is SIGKILLed at it."""

    max_experiments: int | None = Field(default=None, ge=0)
    """Stop after this many experiments beyond the baseline; None = no limit."""

    max_hours: float | None = Field(default=None, gt=0)
    """Stop starting experiments after this many hours; None = no limit."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    """Stop once the agent and the runs' services (the gateway's figure) have spent this much
    (USD); None = no limit."""

    baseline_repeats: int = Field(default=3, ge=1)
    """Runs of the unmodified baseline; their spread is the noise σ (1 = no noise estimate)."""

    plateau: int | None = Field(default=None, ge=1)
    """Stop after this many experiments in a row without a gain of `plateau_pct` % or more."""

    plateau_pct: float = Field(default=1.0, ge=0)
    """The relative gain (percent of the best) that ends a plateau."""

    parallel: int | None = Field(default=None, ge=1)
    """Experiments at once; None = one per leasable group of `sandbox.gpus` GPUs, or, without
    GPUs, as many as the cores allow given `sandbox.cpus` (1 for the replay agent, whose
    patches are a sequence)."""

    pipeline: int | None = Field(default=None, ge=0)
    """Candidates the agent prepares ahead of a free slot, so no slot waits for it to think
    (0 = propose only when a slot is idle: strictly one change at a time with parallel = 1);
    None = 1, or 0 for the replay agent."""

    proposers: int | None = Field(default=None, ge=1)
    """Proposals prepared at once, each by its own conversation or process; None = as many as
    keep every slot fed (at least slots + pipeline, more while the agent thinks longer than
    an experiment runs, at most 4 per slot); 1 for the replay agent."""


class Sandbox(_Model):
    image: str = DEFAULT_IMAGE
    """Local image the experiment runs in (never pulled implicitly)."""

    cpus: float = Field(default=1.0, gt=0)
    """CPU quota in cores."""

    memory: Size = 2 * 1024**3
    """Memory limit; swap is not allowed beyond it."""

    pids: int = Field(default=256, ge=8)
    """Most processes/threads alive at once."""

    tmpfs: Size = 256 * 1024**2
    """Size of the in-memory /tmp (the only writable path besides /workspace)."""

    disk: Size = 2 * 1024**3
    """Most bytes /workspace may hold (the candidate tree included); past it the run is stopped."""

    network: Literal["none"] = "none"
    """Experiments never have a network."""

    runtime: Literal["runc", "runsc"] = "runc"
    """OCI runtime: `runsc` (gVisor) puts a user-space kernel between the code and the host's."""

    seccomp: Path | None = None
    """A seccomp profile (JSON, repo-relative or absolute); None = Docker's default profile."""

    user: str = Field(default="10001:10001", pattern=r"^[1-9]\d*:[1-9]\d*$")
    """uid:gid inside the container; both non-zero."""

    env: dict[str, str] = {}
    """Extra environment variables, literal values only: the host's are never passed."""

    log_bytes: Size = 1024**2
    """Tail of stdout+stderr kept per experiment."""

    gpus: int = Field(default=0, ge=0)
    """GPUs each experiment leases (passed by UUID; 0 = none)."""

    nofile: int = Field(default=1024, ge=64, le=65536)
    """Open files per process (soft and hard): with `pids`, far below the host's file table."""

    shm: Size = 64 * 1024**2
    """Size of /dev/shm (a tmpfs, counted in `memory`); multiprocessing and data loaders use it."""

    requirements: RepoPath | None = None
    """A requirements or lock file (repo-relative) whose wheels the project's image holds; the host
    downloads them, the image installs them with no network (orchestrator/sandbox/project.py)."""

    apt: list[str] = []
    """Debian packages the project's image holds (installed when it is built)."""

    dockerfile: RepoPath | None = None
    """A Dockerfile (repo-relative) built FROM the hardened base (`ARG BASE`); hardened again after."""

    services: Services = []
    """Named services the run stage reaches through the host's gateway (`[[sandbox.services]]`,
    orchestrator/contract/services.py); the network stays none."""


class Gpus(_Model):
    pin: list[int] | None = None
    """Only these GPU indices may be leased (`--gpus 0,2`); None = any free one."""

    max_memory_used: float = Field(default=0.05, ge=0, le=1)
    """Share of a GPU's memory that may already be in use for it to count as free."""

    max_utilization: int = Field(default=10, ge=0, le=100)
    """Utilisation (percent) above which a GPU counts as busy."""


class Screen(_Model):
    """A cheap run first (`[screen]`): only a candidate whose screen score is within `margin`
    of the best's screen score earns the full run. The baseline is screened too."""

    seconds: float | None = Field(default=None, gt=0)
    """The screen run's budget; None = `budget.seconds`."""

    env: dict[str, str] = {}
    """Environment set for the screen run only, over `sandbox.env` (e.g. TRAIN_SECONDS = "60")."""

    margin: float | None = Field(default=None, ge=0)
    """How much worse than the best's screen score a candidate may screen and still go on, in
    the metric's units; None = the noise band of the full runs."""


class GreedySearch(_Model):
    """Every proposal starts from the night's best (the default: one hill, climbed)."""

    kind: Literal["greedy"] = "greedy"


class TreeSearch(_Model):
    """Each proposal starts from a parent chosen among the baseline and every experiment that
    was measured (kept or not) by UCB: how good its score is against how often it was tried
    (night/search.py). A candidate that beats the night's best merges (its exact tree)."""

    kind: Literal["tree"] = "tree"
    c: float = Field(default=1.0, ge=0)
    """Exploration weight: 0 = always the best-scoring node; larger = untried nodes sooner."""


SearchConfig = Annotated[GreedySearch | TreeSearch, Field(discriminator="kind")]


class Contract(_Model):
    direction: RepoPath | None = None
    """The human-written Markdown brief the agent reads."""

    implementation: Implementation
    evaluator: Evaluator
    metric: Metric
    budget: Budget = Budget()
    sandbox: Sandbox = Sandbox()
    gpus: Gpus = Gpus()
    agent: AgentConfig = AutoAgentConfig()
    score: Score | None = None
    screen: Screen | None = None
    executor: ExecutorConfig = LocalExecutorConfig()
    search: SearchConfig = GreedySearch()
    """`[search]`: where each proposal starts (`greedy`, the default, or `tree`)."""
    review: Literal["none", "flagged"] = "flagged"
    """`flagged` (default): a winner whose proposal makes a known tampering move (an exit hook,
    a patched clock, a planted conftest.py...) is held for a person (`autoresearch accept`)
    instead of merged, and the night goes on from the previous best; `none`: every move is
    still recorded and shown, and a winner merges."""

    @property
    def sealed(self) -> list[str]:
        """Repo paths the run stage never sees: the scorer's files and its secret data."""
        if self.score is None:
            return []
        data = [str(m.source) for m in self.score.data if not m.source.is_absolute()]
        return [*self.score.paths, *data]

    @property
    def hidden(self) -> tuple[str, ...]:
        """Repo paths the proposing agent never sees: the sealed ones and `evaluator.hidden`."""
        return (*self.sealed, *self.evaluator.hidden)

    @property
    def forgeable(self) -> bool:
        """The metric comes from a process the candidate shares: shared mode without a sealed
        scorer (with one, only the scorer's output counts)."""
        return self.evaluator.isolation == "shared" and self.score is None

    @model_validator(mode="after")
    def _evaluator_is_not_editable(self) -> Contract:
        from orchestrator.contract.paths import matches_any

        fixed = [*self.evaluator.paths, *(self.score.paths if self.score else [])]
        secret = {str(m.source) for m in (self.score.data if self.score else [])}
        for m in self.evaluator.data:
            if str(m.source) in secret:
                raise ValueError(
                    f"score.data {str(m.source)!r} is also evaluator data; secret data must stay sealed"
                )
        for p in fixed:
            if matches_any(p, self.implementation.paths):
                raise ValueError(
                    f"evaluator path {p!r} is also an implementation path; the evaluator must be fixed"
                )
        return self

    @model_validator(mode="after")
    def _harness_command_runs_no_implementation(self) -> Contract:
        if self.evaluator.isolation != "harness":
            return self
        from orchestrator.contract.commands import implementation_run_by

        path = implementation_run_by(self.evaluator.command, self.implementation.paths)
        if path is not None:
            raise ValueError(
                f"evaluator.command runs the implementation file {path!r}, which harness mode "
                "keeps as data on the trusted side: run it from an evaluator script with "
                'harness.run([...]) (README "Scores no candidate can write: `evaluator.isolation`"), or set '
                'evaluator.isolation = "shared" and let a sealed [score] stage report'
            )
        return self
