"""One stream of `random` across both sides, for a while after the trusted side seeds it.

In one process, a test that calls `random.seed(0)` and then the implementation gets
the same draws every time; across two processes each has its own stream. After the
trusted side seeds `random` with a value (never before, so an unseeded stream stays
private), the next `RandomSync.SPAN` messages carry the module's state whenever it
changed since the other side last saw it, and the receiving side takes it over.
Then the streams part again (each message would cost the state's 7 KB), until the
next seed.
"""

from __future__ import annotations

import random
from typing import Any


class RandomSync:
    """The shared stream's state on one side (see the module docstring)."""

    SPAN = 1000

    def __init__(self, leader: bool) -> None:
        self.leader = leader
        """The trusted side leads: it starts and ends the shared stream."""
        self.active = False
        self.left = 0
        self._seen: Any = None

    def seeded(self) -> None:
        self.active, self.left, self._seen = True, self.SPAN, None

    def outgoing(self) -> dict[str, Any]:
        if not self.active:
            return {}
        if self.left > 0:
            self.left -= 1
            if self.left == 0:  # the trusted side ends the shared stream
                self.active = False
                return {"rng": None}
        state = random.getstate()
        if state == self._seen:
            return {}
        self._seen = state
        from . import values  # loaded by the session already: the hook imports this module bare

        return {"rng": values.encode(state)}

    def incoming(self, frame: dict[str, Any]) -> None:
        if "rng" not in frame:
            return
        if frame["rng"] is None:
            if not self.leader:
                self.active, self._seen = False, None
            return
        from . import values, wire  # as above

        state = values.decode(frame["rng"])
        try:
            random.setstate(state)
        except (TypeError, ValueError) as e:
            raise wire.WireError(f"a random state that does not load: {e}") from None
        self._seen = state
        if not self.leader:  # the candidate's side follows the trusted side's lead
            self.active = True


RANDOM = RandomSync(leader=True)
"""The trusted process's stream (one per process)."""


def follow_seeding(sync: RandomSync = RANDOM) -> None:
    """`random.seed(x)` on the trusted side starts a shared stream (installed by the hook)."""
    plain = random.Random.seed

    def seed(self: random.Random, a: Any = None, version: int = 2) -> None:
        plain(self, a, version)
        if self is getattr(random, "_inst", None) and a is not None:
            sync.seeded()

    seed.__doc__ = plain.__doc__
    random.Random.seed = seed  # type: ignore[method-assign]
    random.seed = random._inst.seed  # type: ignore[attr-defined]
