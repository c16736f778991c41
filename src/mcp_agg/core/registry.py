"""Servers registered through the admin API, shared by every replica through the store.

The replica that gets `POST /admin/servers` validates and runs the server itself (its
answer says whether it connected), then writes it to the store; every replica applies
what it hears through `Store.watch_registrations` (the one that wrote it too, which
finds it runs that entry already). At startup a replica runs the registrations already
in the store, so they survive a restart. Without `[gateway.store]` the store is this
process's: the same path, one replica.

A registration whose name this replica's config file defines is skipped here, with a
warning: the file wins, as it does for a reload.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mcp_agg.config import ServerConfig
from mcp_agg.errors import ConfigError, ReloadError, StoreUnavailable
from mcp_agg.store.base import Registration, Store

if TYPE_CHECKING:
    from mcp_agg.core.views import Reconfigurable

__all__ = ["SharedRegistrations", "entry_json"]

logger = logging.getLogger(__name__)


def entry_json(body: dict[str, Any]) -> str:
    """A `[[servers]]` entry as the store keeps it."""
    return json.dumps(body, sort_keys=True)


class SharedRegistrations:
    """Keeps this replica's registered servers the same as the store's."""

    def __init__(self, store: Store, servers: Reconfigurable) -> None:
        self._store = store
        self._servers = servers

    async def load(self) -> None:
        """Run every registration the store has (startup)."""
        try:
            stored = await self._store.registrations()
        except StoreUnavailable as exc:
            logger.warning("servers registered through the admin API not loaded: %s", exc)
            return
        for name, entry in stored.items():
            await self.apply(Registration(name, entry))

    async def follow(self) -> None:
        """Apply every change any replica makes, while the gateway runs."""
        async for change in self._store.watch_registrations():
            try:
                await self.apply(change)
            except Exception:  # a registration never takes the gateway down
                logger.exception("registered server %r not applied here", change.name)

    async def apply(self, change: Registration) -> None:
        """Make this replica run `change` (a no-op when it does already)."""
        servers, name = self._servers, change.name
        running = servers.registered.get(name)
        try:
            if change.entry is None:
                if running is not None:
                    await servers.unregister(name)
                    logger.info("server %r unregistered (admin API, shared)", name)
                return
            try:
                server = ServerConfig.model_validate_json(change.entry)
            except ValidationError:
                logger.warning("registered server %r in the store is not valid: skipped", name)
                return
            if running == (server,):
                return
            if running is None and name in servers.config_names():
                logger.warning(
                    "registered server %r skipped on this replica: its config file defines it",
                    name,
                )
                return
            if running is not None:
                await servers.unregister(name)
            await servers.register(server)
            logger.info("server %r registered (admin API, shared)", name)
        except (ConfigError, ReloadError) as exc:
            logger.warning("registered server %r not applied here: %s", name, exc)
