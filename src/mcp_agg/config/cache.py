"""The response cache's settings: a server's `cache` table and `[gateway.cache]`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mcp_agg.config.base import StrictModel

__all__ = ["CacheLimitsConfig", "ServerCacheConfig"]


class ServerCacheConfig(StrictModel):
    """`[[servers]] cache = { tools = ["get_*"], ttl = 30 }`: the tool calls the operator
    allows the gateway to answer from its cache (docs/caching.md).

    Only tools that are read-only are ever cached: the backend's `readOnlyHint`, or the
    operator's `read_only_tools` for a backend that does not annotate its tools
    (annotations are untrusted hints; the operator vouches, as `idempotent_tools` does
    for retries).
    """

    #: Glob patterns over the backend's original tool names.
    tools: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
    #: Seconds a result stays fresh.
    ttl: Annotated[float, Field(gt=0)]
    #: `private`: one entry per caller (the user of an authenticated HTTP front, the
    #: stdio client); `public`: one entry shared by every caller.
    scope: Literal["private", "public"] = "private"
    #: Glob patterns of tools that are read-only whatever their annotations say.
    read_only_tools: list[Annotated[str, Field(min_length=1)]] = []


class CacheLimitsConfig(StrictModel):
    """`[gateway.cache]`: the bounds of the in-process response cache (least recently
    used entries go first)."""

    max_entries: Annotated[int, Field(ge=1)] = 1000
    max_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
