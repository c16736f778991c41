"""Shared state: what the replicas of a fleet keep in one place (docs/fleet.md).

`Store` is the seam; `MemoryStore` keeps everything in process (the embedded default,
one replica), the Redis store shares it between replicas (`[gateway.store]`), behind
the fail-safe wrapper that says what happens while Redis is unreachable.
"""

from __future__ import annotations

from mcp_agg.config import StoreConfig
from mcp_agg.store.base import Registration, Store
from mcp_agg.store.memory import MemoryStore

__all__ = ["MemoryStore", "Registration", "Store", "open_store"]


def open_store(config: StoreConfig | None) -> Store:
    """The store `[gateway.store]` configures: in process without one, else Redis behind
    the fail-safe wrapper (`store_failure`). Nothing is connected yet: the first
    operation connects, so a gateway starts while Redis is down."""
    if config is None:
        return MemoryStore()
    from mcp_agg.store.failsafe import FailSafeStore  # redis-py: only with a store
    from mcp_agg.store.redis import RedisStore

    shared = RedisStore(config)
    return FailSafeStore(shared, address=shared.address, failure=config.store_failure)
