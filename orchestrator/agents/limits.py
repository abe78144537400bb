"""Which of the host's own limits ended an agent's command: said as such, never blamed on it.

- An argument over the kernel's limit for one argument (E2BIG, 128 KiB: a prompt pasted
  with `"$(cat {prompt_file})"`): the shell cannot start the CLI (exit 126, "Argument
  list too long"). The setup's to fix, and every later prompt is longer: the night stops
  with one line that says how to pass the prompt instead.
- The container's memory (an OOM kill), its process limit (a fork refused: the `max`
  event of its pids cgroup, read by the sandbox's cgroup sampler while it runs) and its
  copy's disk: that proposal is refused, naming the limit and its setting; the night
  goes on.

The figures are the host's (the engine's OOM flag, the kernel's cgroup counters, the
copy's filesystem); only the E2BIG line is read from the command's output.
"""

from __future__ import annotations

from orchestrator.agents.config import CommandAgentConfig
from orchestrator.sandbox import ContainerResult

ARG_LIMIT = 128 * 1024
"""MAX_ARG_STRLEN: the most bytes of one argument (or environment string) execve takes."""


def too_long(code: int, output: str) -> bool:
    """The shell could not start a program: an argument over the kernel's limit (E2BIG)."""
    return code == 126 and "Argument list too long" in output


def e2big_reason(prompt_bytes: int) -> str:
    return (
        f"agent command could not start: one of its arguments is over the host's limit of "
        f"{ARG_LIMIT // 1024} KiB for one argument (E2BIG, 'Argument list too long'; the prompt "
        f'is {prompt_bytes / 1024:.0f} KiB) — let the CLI read the prompt on stdin: drop "$(cat '
        "{prompt_file})\" from agent.command (see the README's Agents table)"
    )


def _size(n: int) -> str:
    return f"{n / 1024**3:g} GiB" if n >= 1024**3 else f"{n / 1024**2:g} MiB"


def host_limit(cfg: CommandAgentConfig, result: ContainerResult) -> str | None:
    """Why the host stopped the command in its container, as a refusal's reason; None if it did not."""
    if result.disk_full:
        return (
            f"the agent filled its copy: agent.disk = {_size(cfg.disk)} (the host's cap on the "
            "copy, not the CLI's failure) — raise agent.disk if the change needs more"
        )
    if result.exit_code == 0:
        return None
    if result.oom_killed:
        return (
            f"the agent command was killed by the host's memory limit: agent.memory = "
            f"{_size(cfg.memory)} (an OOM kill) — raise agent.memory"
        )
    if result.forks_refused:
        return (
            f"the agent command reached the host's process limit: agent.pids = {cfg.pids} "
            f"({result.forks_refused} fork(s) refused) — raise agent.pids"
        )
    return None
