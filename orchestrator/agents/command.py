"""Any coding-agent CLI as the proposer: Claude Code, Codex, aider, a script of yours.

The command runs in a container of its own (container.py: hardened like an
experiment's, its only ways out the agent's services through the gateway, the keys
added on the host), or with `agent.on_host = true` on the host, under guard.py, with
the host's environment — said at start. Either way it works in a private copy of the
best commit (copy.py: a throwaway git repository on a capped filesystem, outside the
user's, so a CLI that runs git cannot touch the user's history), with the rendered
context in a prompt file that is also its stdin (unless the command names
`{prompt_file}`), and the whole history, one line per experiment, in a file beside it
(`$AUTORESEARCH_HISTORY`). Several run at once, each in its own copy. Its edits are read
back checked and then validated like any other proposal: a change outside the allowed
paths is refused, and the code it wrote still only ever runs in the sandbox. It may
print `DESCRIPTION: ...` and `HYPOTHESIS: ...` lines to describe its change.

What ends it is told apart (limits.py): its own failures (an API outage, a crash, a
non-zero exit) are the infrastructure's, retried, never the candidate's; a key an
upstream refused, a CLI that cannot start (exit 126/127, or an argument over the
kernel's limit) stop the night with one line; the host's limits on its memory,
processes and copy, and its time limit, refuse that one proposal.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import sanitize
from orchestrator.agents import Context, Proposal
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.container import INBOX, AgentContainer, Invocation, seat_inbox
from orchestrator.agents.context import render_full_history, render_prompt
from orchestrator.agents.copy import Copies, read_back
from orchestrator.agents.limits import e2big_reason, host_limit, too_long
from orchestrator.agents.services import refused_key, token_figures
from orchestrator.errors import Cancelled, InfraError, ProposalRefused, UserError
from orchestrator.executors.seats import Seat
from orchestrator.gateway.server import cost
from orchestrator.sandbox.disk import Workdir

if TYPE_CHECKING:
    from orchestrator.contract.model import Contract

INSTRUCTIONS = """

# Your task

Make ONE focused change to the implementation files in the current directory that should
improve the metric. Do not touch other files. When done, print one line
`DESCRIPTION: <what changed>` and one line `HYPOTHESIS: <why it should help>`, and, for
the other proposers, up to three lines `NOTE: <what you found: an idea worth trying, or
one ruled out and why>`.
"""
GUARD = Path(__file__).with_name("guard.py")
"""Kills the command's whole process group when the orchestrator dies (see guard.py)."""


OWNER_ENV = "AUTORESEARCH_AGENT_OF"
"""Marks every process of a command with its run folder: a killed night's leftovers are found
(and killed) by it at the next start."""


def reap_commands(run_dir: Path) -> int:
    """Kill what agent commands of this run a killed orchestrator left running; how many."""
    mark = f"{OWNER_ENV}={run_dir}".encode()
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if mark in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                killed += 1
    return killed


ON_HOST_WARNING = (
    "warning: agent.on_host = true — the agent command runs on this host, with this host's "
    "environment and keys, outside the sandbox; leave it unset to run it in a container"
)


def build(
    cfg: CommandAgentConfig, contract: Contract, run_dir: Path, say: Callable[[str], None]
) -> CommandAgent:
    """`agent.kind = "command"` (its `builder`)."""
    return CommandAgent(cfg, say=say, run_dir=run_dir)


class CommandAgent:
    in_turn = False

    def __init__(
        self,
        cfg: CommandAgentConfig,
        say: Callable[[str], None] = print,
        run_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.say = say
        self._live: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._cancelled = False
        self._container: AgentContainer | None = None
        self._lines: dict[int, str] = {}
        """history.md's line of each finished experiment, made once (`render_full_history`)."""
        box = run_dir / "agent" if run_dir else Path(tempfile.gettempdir()) / "autoresearch-agent"
        self.copies = Copies(box, say)
        if cfg.on_host:
            say(ON_HOST_WARNING)
        else:
            self._container = AgentContainer(cfg, box, self.copies.leftover, say)

    def cancel(self) -> None:
        """Kill every command in flight, its container or its process group on the host; none
        starts after this (the night is torn down or over)."""
        if self._container is not None:
            self._container.cancel()
        with self._lock:
            self._cancelled = True
            live, self._live = list(self._live), set()
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _execute(
        self, command: str, work: Path, env: dict[str, str], stdin: str
    ) -> tuple[int, str]:
        """Run the command under its guard, in a process group of its own, `stdin` its input;
        (exit code, what it printed). Past `timeout_s` the group is killed and the proposal
        refused."""
        with self._lock:  # started and registered at once: a cancel kills it or comes first
            if self._cancelled:
                raise Cancelled("the agent was cancelled: the night is torn down or over")
            proc = subprocess.Popen(
                [sys.executable, str(GUARD), command, stdin],
                cwd=work,
                env=env,
                stdin=subprocess.PIPE,  # never written: it closes when we die (see guard.py)
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self._live.add(proc)
        late = threading.Event()

        def time_up() -> None:
            late.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(self.cfg.timeout_s, time_up)
        timer.start()
        try:
            assert proc.stdout is not None
            out = proc.stdout.read()
            proc.wait()
        finally:
            timer.cancel()
            with self._lock:
                self._live.discard(proc)
            if proc.stdin:
                proc.stdin.close()
        if late.is_set():
            raise ProposalRefused(f"agent command timed out after {self.cfg.timeout_s:g} s")
        return proc.returncode, out.decode(errors="replace")

    def _in_container(
        self, how: Invocation, copy: Workdir, inbox: Path, seat: Seat | None
    ) -> tuple[int, str, dict[str, float], float]:
        """Run the command in its container; (exit code, what it printed, gateway figures, the
        seconds it ran: the container's, its image and copy made before not counted).
        Raises UserError for a key an upstream refused, ProposalRefused past a limit."""
        assert self._container is not None
        outcome = self._container.run(how, copy, inbox, seat)
        result, figures = outcome.result, outcome.figures
        refused = refused_key(self._container.services, figures)
        if refused is not None:
            raise UserError(refused)
        cost_usd, usage = _spent(figures)
        why = host_limit(self.cfg, result)
        if why is None and result.timed_out:
            why = f"agent command timed out after {self.cfg.timeout_s:g} s"
        if why is not None:
            raise ProposalRefused(why, cost_usd=cost_usd, usage=usage)
        code = -1 if result.exit_code is None else result.exit_code
        return code, result.output, figures, result.wall_s

    def _run(
        self, ctx: Context, copy: Workdir, inbox: Path, seat: Seat | None
    ) -> tuple[str, dict[str, float], float]:
        """Write the prompt and history into `inbox`, run the command on the copy; its output,
        the gateway's figures, and the seconds the command itself ran."""
        where = Path(INBOX) if self._container is not None else inbox
        full = render_full_history(ctx.history, lines=self._lines)
        (inbox / "history.md").write_text(full + "\n")
        prompt = render_prompt(ctx, full=str(where / "history.md")) + INSTRUCTIONS
        (inbox / "prompt.md").write_text(prompt)
        how = _invocation(self.cfg, where, ctx.experiment)
        figures: dict[str, float] = {}
        if self._container is not None:
            code, text, figures, ran_s = self._in_container(how, copy, inbox, seat)
        else:
            host_env = {**os.environ, **how.env, OWNER_ENV: str(ctx.run_dir or "")}
            t0 = time.monotonic()
            code, text = self._execute(how.command, copy.path, host_env, how.stdin)
            ran_s = time.monotonic() - t0
        self._judge_exit(code, text, len(prompt.encode()))
        return text, figures, ran_s

    def _judge_exit(self, code: int, text: str, prompt_bytes: int) -> None:
        """Raises what a non-zero exit means: the setup's (UserError) or the backend's (InfraError)."""
        if too_long(code, text):
            raise UserError(e2big_reason(prompt_bytes))
        if code in (126, 127):  # the shell found no such command: the setup's
            raise UserError(
                f"agent command {self.cfg.command!r} cannot run (exit {code}) — "
                "fix agent.command or install the CLI"
                + ("" if self._container is None else f" in agent.image {self.cfg.image}")
            )
        if code != 0:  # an outage of its API, its own crash: never the candidate's
            last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            raise InfraError(f"agent command exited {code}: {sanitize.field(last)[:200]}")

    def _seat(self) -> contextlib.AbstractContextManager[Seat | None]:
        """The container made ahead this proposal runs in (agents/container.py), if one is."""
        if self._container is None:
            return contextlib.nullcontext()
        return self._container.seat(_invocation(self.cfg, Path(INBOX), 0))

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        with (
            self._seat() as seat,
            tempfile.TemporaryDirectory(prefix="autoresearch-agent-") as tmp,
            self.copies.hold(scratch, self.cfg.disk, seat.disk if seat else None) as copy,
        ):
            inbox = seat_inbox(seat.held) if seat else Path(tmp) / "agent"  # outside the copy
            inbox.mkdir(mode=0o755, exist_ok=True)  # readable by the container's user
            text, figures, ran_s = self._run(ctx, copy, inbox, seat)
            fields = _fields(text)
            cost_usd, usage = _spent(figures)
            try:
                read_back(copy.path, scratch)
            except ProposalRefused as e:
                raise ProposalRefused(e.reason, fields["DESCRIPTION"], cost_usd, usage) from None
        try:
            name = shlex.split(self.cfg.command)[0]
        except (ValueError, IndexError):
            name = "command"
        return Proposal(
            fields["DESCRIPTION"][:200] or f"proposal by {Path(name).name}",
            fields["HYPOTHESIS"],
            cost_usd=cost_usd,
            usage=usage,
            agent_s=ran_s,
            notes=tuple(_notes(text)),
        )


def _invocation(cfg: CommandAgentConfig, where: Path, experiment: int) -> Invocation:
    """The command as it runs for `experiment`, its variables, and what its standard input
    reads: the prompt file, or nothing when the command names `{prompt_file}` (the prompt
    and history files are in `where`)."""
    prompt = str(where / "prompt.md")
    env = {
        "AUTORESEARCH_EXPERIMENT": str(experiment),
        "AUTORESEARCH_PROMPT": prompt,
        "AUTORESEARCH_HISTORY": str(where / "history.md"),
    }
    command = cfg.command.replace("{prompt_file}", shlex.quote(prompt))
    return Invocation(command, env, os.devnull if "{prompt_file}" in cfg.command else prompt)


def _fields(text: str) -> dict[str, str]:
    """The `DESCRIPTION: ...` and `HYPOTHESIS: ...` lines a CLI printed (the last of each)."""
    fields = {"DESCRIPTION": "", "HYPOTHESIS": ""}
    fields.update((k, v) for k, v in _keyed(text) if k in fields)
    return fields


def _notes(text: str) -> list[str]:
    """The `NOTE: ...` lines a CLI printed, for the other proposers."""
    return [v for k, v in _keyed(text) if k in ("NOTE", "NOTES")]


def _keyed(text: str) -> Iterator[tuple[str, str]]:
    """Each `KEY: value` line a CLI printed with a value, in order."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip():
            yield key.strip(), value.strip()


def _spent(figures: dict[str, float]) -> tuple[float | None, dict[str, int]]:
    """What the services that count tokens were used for: (USD, tokens); (None, {}) without."""
    if not any(k.endswith("_tokens") for k in figures):
        return None, {}
    return cost(figures), token_figures(figures)
