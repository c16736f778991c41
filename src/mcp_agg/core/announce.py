"""Keeping the catalog current as backends come and go, and telling clients what changed.

A replica that changes state (connects, loses its session, lists other tools) asks for
a rebuild (`Announcer.changed`). Bursts are coalesced; the catalog is rebuilt and
swapped in whole, and when what clients see has changed, each list that changed is
announced in each era's way: modern-era clients hear of it on their
`subscriptions/listen` streams (the subscription bus), handshake-era connections are
sent `notifications/*/list_changed` (FastMCP has no broadcast, so the connections are
tracked as they initialize).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import TYPE_CHECKING, Protocol

import anyio
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged

if TYPE_CHECKING:
    from mcp_agg.core.catalog import Catalog

__all__ = ["Announcer", "CatalogHost"]

#: The gateway's log lines keep the logger they were written to before it was split.
logger = logging.getLogger("mcp_agg.core.gateway")

#: Coalesce bursts of backend changes (a restart changes state several times).
_REBUILD_DEBOUNCE = 0.05
#: Eras whose connections accept unsolicited list_changed notifications.
_MODERN_ERA = "2026-"


class CatalogHost(Protocol):
    """Whose catalog is kept current: the gateway's, assembled from its groups."""

    catalog: Catalog

    def assemble_catalog(self, *, strict: bool) -> Catalog: ...


class Announcer:
    """Rebuilds the catalog when backends change, and announces what changed."""

    def __init__(self, host: CatalogHost, bus: InMemorySubscriptionBus) -> None:
        self._host = host
        self._bus = bus
        self._changed = anyio.Event()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    def track(self, connection: Connection) -> None:
        """A handshake-era connection, to be told of changes while it lives."""
        self._connections.add(connection)

    def changed(self) -> None:
        """A backend changed: rebuild soon (`run`)."""
        self._changed.set()

    async def run(self) -> None:
        """Rebuild after each burst of changes, until cancelled."""
        while True:
            await self._changed.wait()
            await anyio.sleep(_REBUILD_DEBOUNCE)
            self._changed = anyio.Event()
            await self.refresh()

    async def refresh(self) -> None:
        """Rebuild the catalog, and tell clients what changed in it."""
        before = self._host.catalog
        after = self._host.assemble_catalog(strict=False)
        old, new = before.signature(), after.signature()
        self._host.catalog = after
        if old != new:
            logger.info(
                "catalog changed: %d tools, %d prompts", len(after.tools), len(after.prompts)
            )
            await self.announce(
                tools=old[0] != new[0], resources=old[1:3] != new[1:3], prompts=old[3] != new[3]
            )

    async def announce(self, *, tools: bool, resources: bool, prompts: bool) -> None:
        """Tell connected clients which lists changed, in their era's way."""
        if tools:
            await self._bus.publish(ToolsListChanged())
        if resources:
            await self._bus.publish(ResourcesListChanged())
        if prompts:
            await self._bus.publish(PromptsListChanged())
        for connection in list(self._connections):
            if connection.protocol_version.startswith(_MODERN_ERA):
                continue  # modern era: list_changed travels only on subscriptions/listen
            if not connection.has_standalone_channel:
                continue
            with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                if tools:
                    await connection.send_tool_list_changed()
                if resources:
                    await connection.send_resource_list_changed()
                if prompts:
                    await connection.send_prompt_list_changed()
