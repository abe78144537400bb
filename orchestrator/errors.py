"""Every error the orchestrator raises on purpose.

Two families, kept apart on purpose (STYLE.md #6):
- `UserError` and subclasses: something a person must fix (a bad contract, no
  engine, a missing image). Printed as one line, no traceback, by click.
- `InfraError`: the machinery under an experiment failed (the Docker daemon went
  away, the disk filled). Never the candidate's fault: the loop pauses, retries
  and never records it as the candidate's crash.
"""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A problem the user can fix; the message says what failed, where, and the fix."""

    exit_code = 2


class ContractError(UserError):
    """The contract (file or flags) is invalid."""


class EngineUnavailable(UserError):
    """No Docker engine answers."""


class ImageMissing(UserError):
    """The sandbox image is not present locally (we never pull implicitly)."""


class WorkspaceError(UserError):
    """The host repository is not in a state we can work from."""


class RunNotFound(UserError):
    """No run with that tag in this repository."""


class InfraError(Exception):
    """The infrastructure under an experiment failed; retry, never blame the candidate."""


class ImageAbsent(InfraError):
    """The engine does not hold the sandbox image (now): retried in a night, whose image may
    come back (`images build`, `docker load`); `ImageMissing` when found at the start."""


class ProposalRefused(Exception):
    """An agent's proposal broke a rule (outside allowed paths, symlink, binary...).

    Recorded as the experiment's outcome with `reason`; the candidate never runs.
    """

    def __init__(
        self,
        reason: str,
        description: str = "",
        cost_usd: float | None = None,
        usage: dict[str, int] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description
        self.cost_usd = cost_usd
        self.usage = usage or {}
        self.by: str | None = None
        """Which member of a portfolio made the refused proposal."""
        self.notes: tuple[str, ...] = ()
        """Notes the agent left before it was refused (Claude's `note` tool): kept all the same."""


class Cancelled(Exception):
    """The night is being torn down (interrupt, another worker's fatal error): stop this work."""
