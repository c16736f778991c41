"""A client the gateway can ask or tell at any time, and the rule a backend session's relay
follows to find it.

Within a call, a backend's request goes to the calling client on the call's own channel
(core/caller.py). Outside a call, only a session with a fixed owner has someone to ask:
the stdio front's one client, or the client an HTTP front's per-client session belongs to
(docs/sessions.md). That owner is a `ConnectionPeer`: the SDK's `Connection` of the client,
asked on its standalone channel (on HTTP, the client's GET stream).

A backend may ask before its owner is there: backends connect at startup, in parallel
with the stdio front, and ask for roots as soon as they are initialized. Such a request
waits (up to `wait` seconds) until the client has initialized, and is then asked of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio
import mcp_types
from mcp.server.connection import Connection, allowed_log_levels
from mcp.shared.exceptions import MCPError, NoBackChannelError

from mcp_agg.core.caller import LogLevels, log_rank, refuse_undeclared

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.team import UserSignIn
    from mcp_agg.core.views import ClientPeer

__all__ = ["ClientKey", "ConnectionPeer", "PerClient", "RelayRule"]


@dataclass(frozen=True, slots=True)
class RelayRule:
    """Who a backend session's relay may ask or tell, beside the client of a call.

    `peer`: the session's fixed owner, asked and told at any time; None: nobody outside
    a call. `guarded`: the session is shared by the HTTP front's clients, so a backend's
    `roots/list` is answered with no roots (any client's would reach the others).
    """

    peer: ClientPeer | None = None
    guarded: bool = False


#: Who a per-client session belongs to: a handshake-era client's connection (its
#: `Mcp-Session-Id`), or a modern-era caller's authenticated identity.
ClientKey: TypeAlias = Connection | str


@dataclass(frozen=True, slots=True)
class PerClient:
    """The client of a request, as a per-client backend session needs it."""

    key: ClientKey
    #: Its fixed owner, asked and told at any time; None for a modern-era caller, which
    #: has no channel outside its own requests.
    peer: ClientPeer | None
    #: The log level the client asked for, applied to a session when it opens.
    level: mcp_types.LoggingLevel | None = None
    #: Tells the client that a resource of a server (its group name) changed: the URI
    #: as the backend sent it, which the callee turns into the one clients see.
    updated: Callable[[str, str], Awaitable[None]] | None = None
    #: Speak the handshake era to the backend whatever it supports: the client speaks
    #: it, and a backend that speaks both eras behaves differently in each (docs/eras.md).
    legacy: bool = False
    #: Who the session's relay asks beside a call's client; None: `peer` alone.
    rule: Callable[[], RelayRule] | None = None
    #: The caller as a user of `per_user` servers, whose token set the session of
    #: such a server carries; None: no such servers, or no authenticated caller.
    user: UserSignIn | None = None


class ConnectionPeer:
    """One client connection as a fixed owner (`ClientPeer`): asked on its standalone
    channel, once it has initialized; told log messages at the level it set."""

    def __init__(
        self, levels: LogLevels, *, wait: float, connection: Connection | None = None
    ) -> None:
        self._levels = levels
        self._wait = wait
        self._connection = connection
        self._attached = anyio.Event()
        if connection is not None:
            self._attached.set()

    @property
    def connection(self) -> Connection | None:
        return self._connection

    def attach(self, connection: Connection) -> None:
        """The client has connected (the stdio front's, once it initializes)."""
        self._connection = connection
        self._attached.set()

    async def ask(self, request: mcp_types.ServerRequest, result_type: type[Any], what: str) -> Any:
        connection = await self._ready(what)
        refuse_undeclared(connection, request, what)
        try:
            return await connection.send_request(request, result_type=result_type)
        except NoBackChannelError as exc:
            raise MCPError(
                mcp_types.METHOD_NOT_FOUND,
                f"{what}: the client's connection takes no requests from the server",
            ) from exc

    async def log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        connection = self._connection
        if connection is None or not connection.initialized.is_set():
            return  # nobody to tell yet: log messages are not held
        if params.level not in allowed_log_levels(connection.protocol_version, None):
            return  # a modern-era client takes log messages only within its requests
        level = self._levels.get(connection)
        if level is not None and log_rank(params.level) < log_rank(level):
            return
        data = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        with contextlib.suppress(Exception):  # the client went away: its loss
            await connection.notify("notifications/message", data)

    async def _ready(self, what: str) -> Connection:
        """The connection once the client has initialized, waiting at most `wait`."""
        with anyio.move_on_after(self._wait):
            await self._attached.wait()
            connection = self._connection
            assert connection is not None
            await connection.initialized.wait()
            return connection
        raise MCPError(
            mcp_types.INTERNAL_ERROR,
            f"{what}: the client did not initialize within {self._wait:g}s",
        )
