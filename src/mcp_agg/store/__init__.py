"""Shared state: what the replicas of a fleet keep in one place (docs/fleet.md).

`Store` is the seam; `MemoryStore` keeps everything in process (the embedded default,
one replica), the Redis store shares it between replicas (`[gateway.store]`).
"""

from __future__ import annotations

from mcp_agg.store.base import Registration, Store
from mcp_agg.store.memory import MemoryStore

__all__ = ["MemoryStore", "Registration", "Store"]
