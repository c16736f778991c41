"""What clients ask of their sessions beside calls: log levels, resource subscriptions
and roots, each carried to the backends; and which backend session serves which client.

A replica's own session is shared by every client, so what the clients want is merged:
backends log at the most verbose level any client asked for, and a backend resource is
subscribed to once however many clients subscribed to it (and unsubscribed when the
last one leaves). A change of a resource reaches every subscriber: a handshake-era
connection directly, modern-era `subscriptions/listen` streams through the subscription
bus.

Who a backend session's relay may ask outside a call depends on the front
(docs/sessions.md): the stdio front has one client, the fixed owner of every backend
session; on the HTTP front a shared session has none (and gets no roots), and a
per-client server gives each client a session of its own (`per_client`), which its
log level and roots changes reach, and no other client's.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import mcp_types
from fastmcp import Client
from mcp.server.connection import Connection
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_agg.backend.era import takes_log_level
from mcp_agg.backend.oauth.team import TeamSignIn, UserSignIn
from mcp_agg.core.caller import LogLevels, current_caller
from mcp_agg.core.peer import ConnectionPeer, PerClient, RelayRule
from mcp_agg.security.auth import current_identity, current_user

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.config import Config
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.security.access import Visibility

__all__ = ["SessionHost", "Sessions", "quietly"]

#: The gateway's log lines keep the logger they were written to before it was split.
logger = logging.getLogger("mcp_agg.core.gateway")


class SessionHost(Protocol):
    """What session state reaches of the gateway: its replicas, and what the current
    caller may see of its catalog."""

    @property
    def config(self) -> Config: ...

    @property
    def upstreams(self) -> Sequence[Upstream]: ...

    @property
    def catalog(self) -> Catalog: ...

    @property
    def visibility(self) -> Visibility: ...


class Sessions:
    """The clients' log levels and resource subscriptions, merged for the backends, and
    which backend session serves which client (`mcp_agg.core.views.ClientFront`)."""

    def __init__(self, host: SessionHost, bus: InMemorySubscriptionBus) -> None:
        self._host = host
        self._bus = bus
        #: Log levels clients asked for; backends send at the most verbose of them.
        self.log_levels = LogLevels()
        #: Who is subscribed to each exposed resource URI: handshake-era connections
        #: (told directly) and modern-era listen streams (told through the bus).
        self._subscribers: dict[str, weakref.WeakSet[object]] = {}
        #: The front serving clients, once one does (none for `mcp-agg call`).
        self.front: Literal["stdio", "http"] | None = None
        #: The stdio front's one client: every backend session's fixed owner.
        self.stdio_client: ConnectionPeer | None = None
        #: The users' sign-ins to `per_user` servers (`backend/oauth/team.py`); None
        #: without `token_key` and a public URL.
        self.team: TeamSignIn | None = None

    def serve(self, front: Literal["stdio", "http"]) -> None:
        """A front serves the gateway's clients from now on."""
        self.front = front
        if front == "stdio":
            # A backend may ask before the client is there: it waits, as long as a
            # backend may take to connect.
            self.stdio_client = ConnectionPeer(self.log_levels, wait=self._wait)

    @property
    def _wait(self) -> float:
        return self._host.config.gateway.connect_timeout

    def relay_rule(self) -> RelayRule:
        """Who a replica's own session may ask or tell beside a call's client."""
        if self.stdio_client is not None:
            return RelayRule(peer=self.stdio_client)
        return RelayRule(guarded=self.front == "http")

    def per_client(self) -> PerClient | None:
        """The current request's client on the HTTP front: its connection for a
        handshake-era client, its identity for a modern-era one (none without
        `[gateway.auth]`: then the shared session serves it)."""
        caller = current_caller.get()
        if self.front != "http" or caller is None:
            return None
        connection = caller.connection
        auth = self._host.config.gateway.auth
        user = current_user(auth)
        signs_in = None if user is None or self.team is None else UserSignIn(user, self.team)
        if caller.handshake and connection is not None:
            peer = ConnectionPeer(self.log_levels, wait=self._wait, connection=connection)
            level = self.log_levels.get(connection)
            host = self._host

            async def updated(group: str, backend_uri: str) -> None:
                # The catalog of the moment: a reload may have changed who collides.
                uri = host.catalog.handed_out(group, backend_uri)
                await connection.send_resource_updated(uri)

            return PerClient(connection, peer, level, updated, legacy=True, user=signs_in)
        identity = current_identity(auth)
        if identity is None or not identity.client_id:
            return None
        # By user, not client id: two people may share a client id claim, never a
        # session (a `per_user` server's carries its user's token).
        return PerClient(f"identity:{user or identity.client_id}", None, user=signs_in)

    def client_seen(self, connection: Connection | None) -> None:
        """A request of the stdio client: a modern-era client, which never initializes,
        owns the backend sessions from its first request (it takes no server requests:
        a backend asking it is answered at once, not after `connect_timeout`)."""
        peer = self.stdio_client
        if (
            peer is not None
            and peer.connection is None
            and connection is not None
            and connection.protocol_version in MODERN_PROTOCOL_VERSIONS
        ):
            peer.attach(connection)

    async def client_initialized(self, connection: Connection) -> None:
        """The stdio client has initialized: it owns every backend session from now, and
        backends that asked for roots before it was there ask again."""
        if self.stdio_client is None:
            return
        self.stdio_client.attach(connection)
        await self.roots_changed(connection)

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
                # The client's own sessions get its own level, and no other client's.
                own = upstream.clients.get(connection) if connection is not None else None
                if own is not None and own.client is not None:
                    tg.start_soon(quietly, _set_level(own.client, level), upstream.id)

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
        """The backend is unsubscribed when its last subscriber leaves; a client's own
        session of a per-client server at once."""
        subscribers = self._subscribers.get(uri)
        if subscribers is not None:
            subscribers.discard(subscriber)
        route = self._host.catalog.route_uri(uri)
        if route is not None and isinstance(subscriber, Connection):
            for upstream in route[0].replicas:
                own = upstream.clients.get(subscriber)
                if own is not None and own.client is not None:
                    unsubscribing = own.client.session.unsubscribe_resource(route[1])
                    await quietly(unsubscribing, f"unsubscribe {uri} on {upstream.id}")
        if subscribers:
            return
        self._subscribers.pop(uri, None)
        route = self._host.catalog.route_uri(uri)
        if route is not None:
            await route[0].unsubscribe(route[1])

    async def roots_changed(self, connection: Connection | None) -> None:
        """A client's roots changed: backends that asked for roots should ask again. On
        the HTTP front a per-client server hears it on the client's own session only."""
        async with anyio.create_task_group() as tg:
            for upstream in self._host.upstreams:
                if upstream.spec.server.session == "per_client" and self.front == "http":
                    own = upstream.clients.get(connection) if connection is not None else None
                    if own is not None and own.client is not None:
                        tg.start_soon(
                            quietly, own.client.session.send_roots_list_changed(), upstream.id
                        )
                else:
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


async def _set_level(client: Client[Any], level: str) -> None:
    if takes_log_level(client):
        await client.session.set_logging_level(level)  # type: ignore[arg-type]


async def quietly(call: Awaitable[object], what: str) -> None:
    """Await `call`; a failure is logged as a warning about `what`, not raised."""
    try:
        await call
    except Exception as exc:
        logger.warning("%s: %s", what, exc)
