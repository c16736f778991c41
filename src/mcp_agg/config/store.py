"""`[gateway.store]`: where a fleet of replicas keeps the state they share."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mcp_agg.config.base import StrictModel

__all__ = ["StoreConfig"]


class StoreConfig(StrictModel):
    """`[gateway.store]`: shared state in Redis (docs/fleet.md).

    Absent, every replica keeps its state in process (the embedded default): rate-limit
    buckets, revoked sessions, servers registered through the admin API.
    """

    #: `redis://[:password@]host:port/db`, or `rediss://` for TLS; a password comes
    #: from `${VAR}` (it is redacted wherever the URL would be shown).
    url: Annotated[str, Field(pattern=r"^rediss?://[^\s]+$")]
    #: What a replica does while the store cannot be reached: `open` keeps serving with
    #: per-replica state (limits per replica, revocations known to it alone), `closed`
    #: refuses the calls a limit applies to.
    store_failure: Literal["open", "closed"] = "open"
    #: Seconds one store operation may take before it counts as the store failing.
    timeout: Annotated[float, Field(gt=0, le=30)] = 0.5
