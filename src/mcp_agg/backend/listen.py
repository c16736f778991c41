"""A modern-era backend's changes, heard on a `subscriptions/listen` stream.

The modern era (2026-07-28) has no unsolicited `list_changed`, no `resources/subscribe`
and no `resources/updated` outside a stream the client opens: the gateway keeps one
stream per modern-era session, asking for every list change and for updates of the
URIs its clients subscribed to. A stream's filter is fixed when it opens, so a change
of subscriptions opens a new one (and waits for the backend to acknowledge it); a
stream that ends by itself is opened again, and the listing refetched, since changes
may have been missed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

import anyio
from mcp.client.session import ClientSession
from mcp.client.subscriptions import listen
from mcp.shared.subscriptions import ResourceUpdated

__all__ = ["ChangeListener"]

logger = logging.getLogger(__name__)

#: How long to wait before opening a stream again after one ended by itself.
_REOPEN_DELAY = 1.0


class ChangeListener:
    """One session's listen stream: list changes refresh the listing, resource updates
    go to the clients subscribed."""

    def __init__(
        self,
        replica: str,
        session: ClientSession,
        *,
        on_change: Callable[[], None],
        on_updated: Callable[[str], Awaitable[None]],
        uris: Callable[[], Iterable[str]],
    ) -> None:
        self._replica = replica
        self._session = session
        self._on_change = on_change
        self._on_updated = on_updated
        self._uris = uris
        self._acked = anyio.Event()
        self._scope: anyio.CancelScope | None = None

    async def run(self) -> None:
        """Hold a stream open for as long as the session lasts."""
        while True:
            acked = self._acked
            with anyio.CancelScope() as scope:
                self._scope = scope
                try:
                    await self._listen(acked)
                except Exception as exc:
                    if not acked.is_set():
                        # Refused, not lost: asking again would be refused again.
                        # FastMCP 4.1 servers do this: they announce list changes on
                        # the handshake era only. Say how to hear them.
                        logger.warning(
                            "backend %s: no change stream on MCP 2026-07-28 (its changes "
                            'are not heard; protocol = "legacy" hears them): %s',
                            self._replica,
                            exc,
                        )
                        acked.set()
                        return
                    logger.warning("backend %s: change stream lost: %s", self._replica, exc)
                # Ended by itself: changes may have been missed until it is open again.
                await anyio.sleep(_REOPEN_DELAY)
                self._on_change()

    async def opened(self) -> None:
        """Back once the backend has acknowledged the stream now opening (or refused it)."""
        await self._acked.wait()

    async def reopen(self) -> None:
        """Open the stream again with the current URIs; back once it is acknowledged."""
        self._acked = anyio.Event()
        if self._scope is not None:
            self._scope.cancel()
        await self.opened()

    async def _listen(self, acked: anyio.Event) -> None:
        async with listen(
            self._session,
            tools_list_changed=True,
            prompts_list_changed=True,
            resources_list_changed=True,
            resource_subscriptions=sorted(self._uris()),
        ) as stream:
            acked.set()
            async for event in stream:
                if isinstance(event, ResourceUpdated):
                    await self._on_updated(event.uri)
                else:
                    self._on_change()
