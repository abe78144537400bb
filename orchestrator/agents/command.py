"""Any coding-agent CLI as the proposer: Claude Code, Codex, aider, a script of yours.

The command runs in a container of its own (container.py: hardened like an
experiment's, its only way out the LLM API through the gateway, the key added on
the host), or with `agent.on_host = true` on the host, under guard.py, with the
host's environment — said at start. Either way it works in a private copy of the
best commit (a throwaway git repository outside the user's, so a CLI that runs git
cannot touch the user's history), with the rendered context in a prompt file (and
the whole history, one line per experiment, in a file beside it:
`$AUTORESEARCH_HISTORY`). Several run at once, each in its own copy. Its edits are
copied back and then validated like any other proposal: a change outside the
allowed paths is refused, and the code it wrote still only ever runs in the
sandbox. It may print `DESCRIPTION: ...` and `HYPOTHESIS: ...` lines to describe
its change. Its own failures (an API outage, a crash, a non-zero exit) are the
infrastructure's, retried, never the candidate's.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from orchestrator import sanitize
from orchestrator.agents import Context, Proposal
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.container import INBOX, AgentContainer
from orchestrator.agents.context import render_full_history, render_prompt
from orchestrator.errors import InfraError, ProposalRefused, UserError

INSTRUCTIONS = """

# Your task

Make ONE focused change to the implementation files in the current directory that should
improve the metric. Do not touch other files. When done, print one line
`DESCRIPTION: <what changed>` and one line `HYPOTHESIS: <why it should help>`.
"""
_GIT_ID = [
    "-c",
    "user.name=autoresearch",
    "-c",
    "user.email=autoresearch@localhost",
    "-c",
    "commit.gpgsign=false",
]


def _mirror(src: Path, dst: Path) -> None:
    """Make `dst` hold exactly the files of `src` (no .git), deletions included."""
    keep = set()
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if rel.parts[0] == ".git":
            continue
        keep.add(rel)
        out = dst / rel
        if path.is_dir() and not path.is_symlink():
            out.mkdir(parents=True, exist_ok=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_symlink() or out.exists():
                out.unlink()
            shutil.copy2(path, out, follow_symlinks=False)
    for path in sorted(dst.rglob("*"), reverse=True):
        if path.relative_to(dst) not in keep:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


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


class CommandAgent:
    in_turn = False

    def __init__(self, cfg: CommandAgentConfig, say: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.say = say
        self._live: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._container: AgentContainer | None = None
        if cfg.on_host:
            say(ON_HOST_WARNING)
        else:
            self._container = AgentContainer(cfg, say)

    def cancel(self) -> None:
        """Kill every command in flight: its container, or its process group on the host."""
        if self._container is not None:
            self._container.cancel()
        with self._lock:
            live, self._live = list(self._live), set()
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _execute(self, command: str, work: Path, env: dict[str, str]) -> tuple[int, str]:
        """Run the command under its guard, in a process group of its own; (exit code, what
        it printed). Past `timeout_s` the whole group is killed and the proposal refused."""
        proc = subprocess.Popen(
            [sys.executable, str(GUARD), command],
            cwd=work,
            env=env,
            stdin=subprocess.PIPE,  # never written: it closes when we die (see guard.py)
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with self._lock:
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
        self, command: str, work: Path, inbox: Path, env: dict[str, str]
    ) -> tuple[int, str, dict[str, float]]:
        """Run the command in its container; (exit code, what it printed, gateway figures)."""
        assert self._container is not None
        result, figures = self._container.run(command, work, inbox, env)
        if result.timed_out:
            raise ProposalRefused(f"agent command timed out after {self.cfg.timeout_s:g} s")
        code = -1 if result.exit_code is None else result.exit_code
        return code, result.output, figures

    def _run(self, ctx: Context, work: Path, inbox: Path) -> tuple[str, dict[str, float]]:
        """Write the prompt and history into `inbox`, run the command on `work`; its output."""
        where = Path(INBOX) if self._container is not None else inbox
        (inbox / "history.md").write_text(render_full_history(ctx.history) + "\n")
        prompt = render_prompt(ctx, full=str(where / "history.md")) + INSTRUCTIONS
        (inbox / "prompt.md").write_text(prompt)
        command = self.cfg.command.replace("{prompt_file}", shlex.quote(str(where / "prompt.md")))
        env = {
            "AUTORESEARCH_EXPERIMENT": str(ctx.experiment),
            "AUTORESEARCH_PROMPT": str(where / "prompt.md"),
            "AUTORESEARCH_HISTORY": str(where / "history.md"),
        }
        figures: dict[str, float] = {}
        if self._container is not None:
            code, text, figures = self._in_container(command, work, inbox, env)
        else:
            host_env = {**os.environ, **env, OWNER_ENV: str(ctx.run_dir or "")}
            code, text = self._execute(command, work, host_env)
        if code in (126, 127):  # the shell found no such command: the setup's
            raise UserError(
                f"agent command {self.cfg.command!r} cannot run (exit {code}) — "
                "fix agent.command or install the CLI"
                + ("" if self._container is None else f" in agent.image {self.cfg.image}")
            )
        if code != 0:  # an outage of its API, its own crash: never the candidate's
            last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
            raise InfraError(f"agent command exited {code}: {sanitize.field(last)[:200]}")
        return text, figures

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        with tempfile.TemporaryDirectory(prefix="autoresearch-agent-") as tmp:
            work, inbox = Path(tmp) / "repo", Path(tmp) / "agent"  # the prompt outside the copy
            shutil.copytree(scratch, work, symlinks=True)
            for args in (
                ["init", "-q"],
                ["add", "-A"],
                ["commit", "-qm", "best so far", "--allow-empty"],
            ):
                subprocess.run(["git", *_GIT_ID, *args], cwd=work, check=True, capture_output=True)
            inbox.mkdir()
            text, figures = self._run(ctx, work, inbox)
            _mirror(work, scratch)
        fields = {"DESCRIPTION": "", "HYPOTHESIS": ""}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in fields and value.strip():
                fields[key.strip()] = value.strip()
        name = shlex.split(self.cfg.command)[0] if self.cfg.command.strip() else "command"
        usage = {k: int(figures.get(f"gateway.llm.{k}_tokens", 0)) for k in ("input", "output")}
        return Proposal(
            fields["DESCRIPTION"][:200] or f"proposal by {Path(name).name}",
            fields["HYPOTHESIS"],
            cost_usd=figures.get("gateway.llm.usd") if figures else None,
            usage=usage if figures else {},
        )
