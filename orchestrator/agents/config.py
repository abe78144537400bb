"""The `[agent]` table of a contract: which proposer, and its settings.

A discriminated union on `kind` (STYLE.md #3). Each member names the function
that builds its agent (`builder`, 'module:function'); `runs.build_agent` imports
it only then: the replay agent never imports the SDK, the tuner never needs a
key, and this module imports no agent (they import it). The CLI's `--agent`
choices and the contract's error messages come from the union (`AGENT_KINDS`),
so a new kind is one new file in `agents/` plus one member here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, Field, model_validator

from orchestrator.agents.prices import DEFAULT_PRICES as DEFAULT_PRICES
from orchestrator.agents.prices import Price as Price
from orchestrator.agents.services import default_llm, with_defaults
from orchestrator.errors import ContractError
from orchestrator.schema import Model as _Model
from orchestrator.schema import Size

if TYPE_CHECKING:
    from orchestrator.contract.services import Service


class _Member(_Model):
    builder: ClassVar[str]
    """'module:function' that makes this kind's agent from (this member, the contract, the run
    folder, say); imported only when a run builds it (`runs.build_agent`)."""

    def pick(self) -> _Member:
        """The member that builds the agent on this machine now: itself (`auto` picks one)."""
        return self


class ReplayAgentConfig(_Member):
    kind: Literal["replay"] = "replay"
    builder: ClassVar[str] = "orchestrator.agents.replay:build"
    patches: Path
    """Folder of `git diff` patches, applied in name order, one per experiment."""


class AnthropicAgentConfig(_Member):
    kind: Literal["anthropic"] = "anthropic"
    builder: ClassVar[str] = "orchestrator.agents.anthropic:build"
    model: str = "claude-sonnet-5-5"
    max_tokens: int = Field(default=16000, gt=0)
    """Most output tokens per API call (thinking included)."""
    temperature: float | None = Field(default=None, ge=0, le=1)
    """None = the API's default. Must stay None with extended thinking."""
    thinking_budget: int | None = Field(default=None, ge=1024)
    """Extended thinking tokens per call; None = off."""
    max_turns: int = Field(default=40, gt=0)
    """API calls per proposal before it is given up (recorded as refused)."""
    max_tokens_per_proposal: int = Field(default=2_000_000, gt=0)
    """Input + output tokens per proposal, summed over its turns."""
    prices: dict[str, Price] = DEFAULT_PRICES
    """USD per million tokens by model; a model not listed has an unknown cost."""
    base_url: str | None = None
    """API endpoint; None = the SDK's default (or ANTHROPIC_BASE_URL)."""
    timeout_s: float = Field(default=600, gt=0)
    api_retries: int = Field(default=4, ge=0)
    """Retries the SDK makes itself (408/409/429/5xx/529)."""
    stream_retries: int = Field(default=5, ge=0)
    """Our retries of an error event in mid-stream (the SDK does not retry those)."""
    stream_retry_delay_s: float = Field(default=2.0, ge=0)
    """First pause before such a retry; doubles each time, up to 30 s."""

    @model_validator(mode="after")
    def _thinking_has_no_temperature(self) -> AnthropicAgentConfig:
        if self.thinking_budget is not None and self.temperature is not None:
            raise ValueError("temperature cannot be set with extended thinking (thinking_budget)")
        if self.thinking_budget is not None and self.thinking_budget >= self.max_tokens:
            raise ValueError("thinking_budget must be below max_tokens")
        return self


class FloatParam(_Model):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    file: str | None = None
    """Implementation file holding the constant; None when there is only one."""


class IntParam(_Model):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1
    file: str | None = None


class CategoricalParam(_Model):
    type: Literal["categorical"]
    choices: list[str | int | float | bool] = Field(min_length=1)
    file: str | None = None


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES: tuple[str, ...] = tuple(
    get_args(m.model_fields["type"].annotation)[0] for m in get_args(get_args(Param)[0])
)


class TunerAgentConfig(_Member):
    kind: Literal["tuner"] = "tuner"
    builder: ClassVar[str] = "orchestrator.agents.tuner:Tuner"
    space: dict[str, Param] = Field(min_length=1)
    """Module-level constants of the implementation and the values they may take."""
    sampler: Literal["tpe", "random", "cmaes"] = "tpe"
    seed: int = 0
    one_at_a_time: bool = False
    """Change one constant per experiment (round robin), the others stay at the best's values."""

    @model_validator(mode="after")
    def _bounds(self) -> TunerAgentConfig:
        for name, p in self.space.items():
            if not name.isidentifier():
                raise ValueError(f"space key {name!r} is not a Python name")
            if isinstance(p, FloatParam | IntParam) and p.low >= p.high:
                raise ValueError(f"space.{name}: low must be below high")
            if isinstance(p, FloatParam | IntParam) and p.log and p.low <= 0:
                raise ValueError(f"space.{name}: a log scale needs low > 0")
        return self


def _services(entries: list[Any] | None) -> list[Any] | None:
    return None if entries is None else with_defaults(entries)


if TYPE_CHECKING:
    AgentServices = list[Service] | None
else:  # entries stay tables until `with_defaults` fills in each kind's defaults, then validates
    AgentServices = Annotated[list[Any] | None, AfterValidator(_services)]


class CommandAgentConfig(_Member):
    kind: Literal["command"] = "command"
    builder: ClassVar[str] = "orchestrator.agents.command:build"
    command: str = Field(min_length=1)
    """Shell command run in the agent's copy of the best commit. The prompt comes on its stdin,
    unless the command names `{prompt_file}`: that is replaced by the prompt file's path (and
    stdin is empty). A prompt of any size passes either way; `"$(cat {prompt_file})"` does not
    (the kernel's limit on one argument is 128 KiB)."""
    timeout_s: float = Field(default=1800, gt=0)
    """Seconds the command may take for one proposal; it is killed (SIGKILL) after."""
    on_host: bool = False
    """Run the command on this host, with this host's environment and keys (said at start);
    False = in a container of its own whose only ways out are `services`, through the gateway."""
    image: str = "autoresearch/agent:latest"
    """The container's image (Node, Python, git, the CLIs of recipes/agent/npm.txt: Claude Code,
    Codex); the default is built on first use, any other must exist."""
    services: AgentServices = None
    """The container's ways out (`[[agent.services]]`: the fields of `[[sandbox.services]]`),
    each served by the host's gateway, which adds the key. `kind = "anthropic"` or `"openai"`
    fills in the vendor's upstream, key variable and paths (orchestrator/agents/services.py).
    None = one `llm` Messages API (`base_url`, `key_env`: Claude Code); [] = none, no key."""
    base_url: str | None = None
    """The default `llm` service's Messages API; None = the host's ANTHROPIC_BASE_URL, else
    https://api.anthropic.com. With `services` set, give `upstream` there instead."""
    key_env: str = Field(default="ANTHROPIC_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The host variable the default `llm` service sends as `x-api-key` (never in the container)."""
    env: dict[str, str] = Field(default_factory=dict)
    """More variables for the container, literal values only (`ANTHROPIC_MODEL = "..."`)."""
    cpus: float = Field(default=2.0, gt=0)
    memory: Size = 4 * 1024**3
    """The container's memory limit (bytes, or '4g'); a command killed by it is refused."""
    pids: int = Field(default=512, ge=8)
    """Most processes and threads at once; a command that fails at it is refused."""
    tmpfs: Size = 1024**3
    """The in-memory /tmp, the CLI's home (settings, caches)."""
    disk: Size = 2 * 1024**3
    """Most bytes the agent's copy may hold (the best commit and its throwaway git history
    included): a filesystem of its own, where the host allows one; a copy that fills it is
    refused."""
    runtime: Literal["runc", "runsc"] = "runc"

    @model_validator(mode="after")
    def _one_way_to_name_the_api(self) -> CommandAgentConfig:
        legacy = {"base_url", "key_env"} & self.model_fields_set
        if self.services is not None and legacy:
            raise ValueError(
                f"{' and '.join(sorted(legacy))}: only for the default llm service; with "
                "agent.services, set upstream and headers in the service instead"
            )
        return self

    def ways_out(self) -> list[Service]:
        """The services the container reaches: those declared, or the default `llm`."""
        if self.services is not None:
            return list(self.services)
        return [default_llm(self.base_url, self.key_env)]


class AutoAgentConfig(_Member):
    """Claude when ANTHROPIC_API_KEY is set, else the tuner when a space is declared."""

    kind: Literal["auto"] = "auto"
    anthropic: AnthropicAgentConfig = AnthropicAgentConfig()
    tuner: TunerAgentConfig | None = None

    def pick(self) -> AnthropicAgentConfig | TunerAgentConfig:
        """The member `auto` stands for on this machine now (it has no builder of its own)."""
        if os.environ.get("ANTHROPIC_API_KEY"):
            return self.anthropic
        if self.tuner is not None:
            return self.tuner
        raise ContractError(
            "no agent can run: set ANTHROPIC_API_KEY for Claude, or declare a search space for the "
            "offline tuner ([agent.tuner.space] with kind = 'auto', or kind = 'tuner'), or use "
            "--agent replay --patches DIR"
        )


class NoneAgentConfig(_Member):
    """Proposes nothing: the run measures the baseline (and its noise) and stops."""

    kind: Literal["none"] = "none"
    builder: ClassVar[str] = "orchestrator.agents.none:build"


PortfolioMember = Annotated[
    ReplayAgentConfig | AnthropicAgentConfig | TunerAgentConfig | CommandAgentConfig,
    Field(discriminator="kind"),
]


class PortfolioAgentConfig(_Member):
    """Several agents; each proposal goes to one, by a bandit rule on what each yielded
    (agents/portfolio.py)."""

    kind: Literal["portfolio"] = "portfolio"
    builder: ClassVar[str] = "orchestrator.agents.portfolio:build"
    members: list[PortfolioMember] = Field(min_length=2)
    """`[[agent.members]]`: each a whole `[agent]` table of its own kind."""
    explore: float = Field(default=1.0, ge=0)
    """How much an untried or rarely tried member is favoured (UCB1's weight)."""

    def labels(self) -> list[str]:
        """Each member's name in the ledger and on screen: its place and kind (`1-tuner`)."""
        return [f"{i}-{m.kind}" for i, m in enumerate(self.members, start=1)]


AgentConfig = Annotated[
    ReplayAgentConfig
    | AnthropicAgentConfig
    | TunerAgentConfig
    | CommandAgentConfig
    | AutoAgentConfig
    | NoneAgentConfig
    | PortfolioAgentConfig,
    Field(discriminator="kind"),
]

AGENT_MEMBERS: dict[str, type[_Model]] = {
    get_args(m.model_fields["kind"].annotation)[0]: m for m in get_args(get_args(AgentConfig)[0])
}
"""Each `agent.kind` and the member that holds its settings, in the union's order."""
AGENT_KINDS: tuple[str, ...] = tuple(AGENT_MEMBERS)
"""Every `agent.kind` (the CLI's `--agent` choices)."""
