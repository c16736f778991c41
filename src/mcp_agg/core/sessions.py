"""What clients ask of their sessions beside calls: log levels, resource subscriptions
and roots, each carried to the backends.

The backends have one session each, shared by every client, so what the clients want
is merged: backends log at the most verbose level any client asked for, and a backend
resource is subscribed to once however many clients subscribed to it (and unsubscribed
when the last one leaves). A change of a resource reaches every subscriber: a
handshake-era connection directly, modern-era `subscriptions/listen` streams through
the subscription bus.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

import anyio
import mcp_types
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated

from mcp_agg.core.caller import LogLevels

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.security.access import Visibility

__all__ = ["SessionHost", "Sessions", "quietly"]

#: The gateway's log lines keep the logger they were written to before it was split.
logger = logging.getLogger("mcp_agg.core.gateway")


class SessionHost(Protocol):
    """What session state reaches of the gateway: its replicas, and what the current
    caller may see of its catalog."""

    @property
    def upstreams(self) -> Sequence[Upstream]: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def visibility(self) -> Visibility: ...


class Sessions:
    """The clients' log levels and resource subscriptions, merged for the backends."""

    def __init__(self, host: SessionHost, bus: InMemorySubscriptionBus) -> None:
        self._host = host
        self._bus = bus
        #: Log levels clients asked for; backends send at the most verbose of them.
        self.log_levels = LogLevels()
        #: Who is subscribed to each exposed resource URI: handshake-era connections
        #: (told directly) and modern-era listen streams (told through the bus).
        self._subscribers: dict[str, weakref.WeakSet[object]] = {}

    async def set_log_level(self, connection: Connection | None, level: str) -> None:
        """A client's `logging/setLevel`: kept for its connection, and backends are
        asked for the most verbose level any client wants."""
        if connection is not None:
            self.log_levels.set(connection, level)  # type: ignore[arg-type]
        wanted = self.log_levels.most_verbose() or level
        async with anyio.create_task_group() as tg:
            for upstream in self._host.upstreams:
                if upstream.log_level != wanted:
                    tg.start_soon(quietly, upstream.set_log_level(wanted), upstream.id)  # type: ignore[arg-type]

    async def subscribe(self, subscriber: object, uri: str) -> None:
        """Subscribe a client connection or listen stream to an exposed resource URI;
        the owning backend is subscribed once, however many clients are."""
        route = self._host.catalog.route_uri(uri)
        if route is None or not self._host.visibility.allows_uri(uri):
            raise MCPError(mcp_types.INVALID_PARAMS, f"Unknown resource: {uri}")
        group, backend_uri = route
        await group.subscribe(backend_uri)
        self._subscribers.setdefault(uri, weakref.WeakSet()).add(subscriber)

    async def unsubscribe(self, subscriber: object, uri: str) -> None:
        """The backend is unsubscribed when its last subscriber leaves."""
        subscribers = self._subscribers.get(uri)
        if subscribers is not None:
            subscribers.discard(subscriber)
        if subscribers:
            return
        self._subscribers.pop(uri, None)
        route = self._host.catalog.route_uri(uri)
        if route is not None:
            await route[0].unsubscribe(route[1])

    async def roots_changed(self) -> None:
        """A client's roots changed: backends that asked for roots should ask again."""
        async with anyio.create_task_group() as tg:
            for upstream in self._host.upstreams:
                tg.start_soon(quietly, upstream.roots_changed(), upstream.id)

    async def resource_updated(self, upstream: Upstream, backend_uri: str) -> None:
        """A backend resource changed: tell the clients subscribed to it."""
        uri = self._host.catalog.handed_out(upstream.spec.group, backend_uri)
        await self._bus.publish(ResourceUpdated(uri=uri))
        subscribers = list(self._subscribers.get(uri, ()))
        if not subscribers:
            # Its last subscriber's connection closed without unsubscribing.
            await quietly(self.unsubscribe(None, uri), f"unsubscribe {uri}")
        for subscriber in subscribers:
            if isinstance(subscriber, Connection):
                with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                    await subscriber.send_resource_updated(uri)


async def quietly(call: Awaitable[object], what: str) -> None:
    """Await `call`; a failure is logged as a warning about `what`, not raised."""
    try:
        await call
    except Exception as exc:
        logger.warning("%s: %s", what, exc)
