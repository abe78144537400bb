"""Any coding-agent CLI as the proposer: Claude Code, Codex, aider, a script of yours.

The command runs on the host — it is the user's own trusted tool — in a private
copy of the best commit (a throwaway git repository outside the user's, so a
CLI that runs git cannot touch the user's history), with the rendered context in
a prompt file. Its edits are copied back and then validated like any other
proposal: a change outside the allowed paths is refused, and the code it wrote
still only ever runs in the sandbox. It may print `DESCRIPTION: ...` and
`HYPOTHESIS: ...` lines to describe its change.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from orchestrator import sanitize
from orchestrator.agents import Context, Proposal
from orchestrator.agents.config import CommandAgentConfig
from orchestrator.agents.context import render_prompt
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


class CommandAgent:
    in_turn = False

    def __init__(self, cfg: CommandAgentConfig, say: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.say = say

    def propose(self, ctx: Context, scratch: Path) -> Proposal | None:
        with tempfile.TemporaryDirectory(prefix="autoresearch-agent-") as tmp:
            work, prompt = Path(tmp) / "repo", Path(tmp) / "prompt.md"
            shutil.copytree(scratch, work, symlinks=True)
            for args in (
                ["init", "-q"],
                ["add", "-A"],
                ["commit", "-qm", "best so far", "--allow-empty"],
            ):
                subprocess.run(["git", *_GIT_ID, *args], cwd=work, check=True, capture_output=True)
            prompt.write_text(render_prompt(ctx) + INSTRUCTIONS)
            command = self.cfg.command.replace("{prompt_file}", shlex.quote(str(prompt)))
            env = {
                **os.environ,
                "AUTORESEARCH_EXPERIMENT": str(ctx.experiment),
                "AUTORESEARCH_PROMPT": str(prompt),
            }
            proc = subprocess.Popen(
                command,
                shell=True,
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                out, _ = proc.communicate(timeout=self.cfg.timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise ProposalRefused(
                    f"agent command timed out after {self.cfg.timeout_s:g} s"
                ) from None
            text = out.decode(errors="replace")
            if proc.returncode in (126, 127):  # the shell found no such command: the setup's
                raise UserError(
                    f"agent command {self.cfg.command!r} cannot run (exit {proc.returncode}) — "
                    "fix agent.command or install the CLI"
                )
            if proc.returncode != 0:  # an outage of its API, its own crash: never the candidate's
                last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
                raise InfraError(
                    f"agent command exited {proc.returncode}: {sanitize.field(last)[:200]}"
                )
            _mirror(work, scratch)
        fields = {"DESCRIPTION": "", "HYPOTHESIS": ""}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in fields and value.strip():
                fields[key.strip()] = value.strip()
        name = shlex.split(self.cfg.command)[0] if self.cfg.command.strip() else "command"
        return Proposal(
            fields["DESCRIPTION"][:200] or f"proposal by {Path(name).name}", fields["HYPOTHESIS"]
        )
