"""The one pydantic base every configuration section derives from (STYLE.md #3).

Unknown keys are errors, never silence; a validated section is frozen.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
