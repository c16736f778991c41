"""What every table of servers.toml shares: the strict base model and the balancer names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["BalancerName", "StrictModel"]

BalancerName = Literal["round-robin", "least-connections", "weighted", "random", "p2c-ewma"]


class StrictModel(BaseModel):
    """A table of the config: unknown keys are errors (a typo must not pass silently),
    and values are frozen (a loaded config is shared, a reload builds a new one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
