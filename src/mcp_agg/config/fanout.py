"""The `[[fanout]]` entries: tools of the gateway's own that call several targets at once."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mcp_agg.config.base import StrictModel

__all__ = ["FanoutConfig"]


class FanoutConfig(StrictModel):
    """One `[[fanout]]`: a tool of the gateway's own that calls several targets at once.

    The targets are exposed tool names (`targets`), or one tool on every replica of
    a server (`group` and `tool`).
    """

    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    targets: list[Annotated[str, Field(min_length=1)]] | None = None
    group: Annotated[str, Field(min_length=1)] | None = None
    tool: Annotated[str, Field(min_length=1)] | None = None
    strategy: Literal["first-success", "all-wait", "majority-vote"] = "all-wait"
    timeout: Annotated[float, Field(gt=0)] = 20

    @model_validator(mode="after")
    def _check_targets(self) -> FanoutConfig:
        if (self.targets is None) == (self.group is None):
            raise ValueError("needs either `targets` or `group` (with `tool`)")
        if self.targets is not None:
            if self.tool is not None:
                raise ValueError("`tool` goes with `group`, not with `targets`")
            if len(self.targets) < 2:
                raise ValueError("`targets` needs at least two tool names")
            if len(set(self.targets)) != len(self.targets):
                raise ValueError("`targets` names a tool twice")
        elif self.tool is None:
            raise ValueError("`group` needs `tool`: the backend tool to call on every replica")
        return self
