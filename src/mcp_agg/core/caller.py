"""The calling client, seen from a backend: where a backend's per-call messages go.

A backend replica has one session, shared by every client's calls. What the backend
sends while it serves a call (progress, log messages, sampling, elicitation and roots
requests) must reach the client that made the call, and no other client.

- Progress is matched exactly: the gateway asks the backend for progress under the
  backend request's own id, and relays it under the client's progress token.
- Log messages and server-to-client requests carry nothing on the wire that names the
  call they belong to (stdio has no per-request stream). They go to the client whose
  calls are in flight on that session. While calls of several clients are in flight on
  one session, the owner cannot be known and is not guessed: a log message is dropped
  and a request is refused with an error that says why.

A client of the modern era (2026-07-28) takes no requests mid-call: a call of such a
client that may need its input is parked in the gateway's bridge (core/bridge.py), and
a backend's request reaches the client in an input-required result instead.

The gateway's request handlers set `current_caller` for the call they relay; the
backend side reads it when the call is sent.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mcp_types
from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

if TYPE_CHECKING:
    from mcp_agg.core.bridge import ParkedCall

__all__ = ["Caller", "LogLevels", "current_caller", "log_rank", "refuse_undeclared"]

_LEVELS: tuple[mcp_types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)

_RANKS: dict[str, int] = {level: rank for rank, level in enumerate(_LEVELS)}


def log_rank(level: str | None) -> int:
    """A log level's severity (debug lowest); an unknown level ranks as debug."""
    return _RANKS.get(level or "", 0)


class LogLevels:
    """The level each handshake-era client connection asked for with `logging/setLevel`."""

    def __init__(self) -> None:
        self._levels: dict[int, tuple[Connection, mcp_types.LoggingLevel]] = {}

    def set(self, connection: Connection, level: mcp_types.LoggingLevel) -> None:
        key = id(connection)
        if key not in self._levels:
            # Forget the connection when it closes (ids are reused after that).
            connection.exit_stack.callback(self._levels.pop, key, None)
        self._levels[key] = (connection, level)

    def get(self, connection: Connection | None) -> mcp_types.LoggingLevel | None:
        entry = self._levels.get(id(connection)) if connection is not None else None
        return entry[1] if entry is not None and entry[0] is connection else None

    def most_verbose(self) -> mcp_types.LoggingLevel | None:
        """The level backends must send at so that every client gets what it asked for."""
        levels = [level for _, level in self._levels.values()]
        return min(levels, key=log_rank) if levels else None


@dataclass(eq=False, slots=True)
class Caller:
    """One client request that a backend call is being made for."""

    context: ServerRequestContext[Any, Any]
    #: The lowest level of log message to relay; None relays none.
    log_level: mcp_types.LoggingLevel | None
    progress: bool
    #: Where a backend's request goes for a modern-era client (core/bridge.py).
    park: ParkedCall | None = None
    #: The client's answers and state for a modern-era backend's input-required
    #: round (`inputResponses`, `requestState`), sent on with the request.
    backend_round: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, ctx: ServerRequestContext[Any, Any], levels: LogLevels) -> Caller:
        meta = ctx.params.get("_meta") if isinstance(ctx.params, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else None
        allowed = allowed_log_levels(ctx.protocol_version, meta)
        floor = min(allowed, key=log_rank) if allowed else None
        asked = levels.get(connection_of(ctx))
        if floor is not None and asked is not None and log_rank(asked) > log_rank(floor):
            floor = asked
        has_token = meta is not None and meta.get("progressToken") is not None
        return cls(ctx, floor, has_token)

    @property
    def connection(self) -> Connection | None:
        return connection_of(self.context)

    @property
    def capabilities(self) -> dict[str, Any] | None:
        """The capabilities the client declared (at initialize, or in this request's
        `_meta` on the modern era), in wire form; None if unknown."""
        connection = self.connection
        declared = connection.client_capabilities if connection is not None else None
        if declared is None:
            return None
        return declared.model_dump(by_alias=True, mode="json", exclude_none=True)

    @property
    def handshake(self) -> bool:
        """Whether the client's era lets a server send it requests mid-call."""
        return self.context.protocol_version not in MODERN_PROTOCOL_VERSIONS

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        await self.context.session.report_progress(progress, total, message)

    async def log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        if self.log_level is None or log_rank(params.level) < log_rank(self.log_level):
            return
        await self.context.session.send_notification(
            mcp_types.LoggingMessageNotification(params=params),
            related_request_id=self.context.request_id,
        )

    async def request(
        self, request: mcp_types.ServerRequest, result_type: type[Any], what: str
    ) -> Any:
        """Send a server-to-client request on the call's own channel; the client's answer.

        Raises MCPError when the client cannot take it (its era, its transport, its
        capabilities) or answers with an error.
        """
        connection = self.connection
        if connection is not None:
            refuse_undeclared(connection, request, what)
        session = self.context.session
        if not self.handshake and self.park is not None:
            return await self.park.ask(request, result_type, what)
        if not self.handshake:
            raise MCPError(
                mcp_types.INVALID_REQUEST,
                f"{what}: the calling client speaks MCP {self.context.protocol_version}, "
                "which has no server-to-client requests during a call",
            )
        if not session.can_send_request:
            raise MCPError(
                mcp_types.INVALID_REQUEST,
                f"{what}: the calling client's connection cannot take server requests",
            )
        metadata = ServerMessageMetadata(related_request_id=self.context.request_id)
        return await session.send_request(request, result_type, metadata=metadata)


#: The capability a client must have declared for each request a backend may send it.
_NEEDS: dict[str, mcp_types.ClientCapabilities] = {
    "roots/list": mcp_types.ClientCapabilities(roots=mcp_types.RootsCapability()),
    "sampling/createMessage": mcp_types.ClientCapabilities(sampling=mcp_types.SamplingCapability()),
    "elicitation/create": mcp_types.ClientCapabilities(
        elicitation=mcp_types.ElicitationCapability()
    ),
}


def refuse_undeclared(connection: Connection, request: mcp_types.ServerRequest, what: str) -> None:
    """Answer for the client, as it would itself (it has no handler for the method), a
    request it declared no capability for: asked anyway, a 2026-07-28 client refuses the
    input and its SDK fails the whole call the request came within."""
    need = _NEEDS.get(request.method)
    if need is not None and not connection.check_capability(need):
        raise MCPError(
            mcp_types.METHOD_NOT_FOUND,
            f"{what}: the client did not declare the capability for it",
        )


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection | None:
    """The client connection a request came on (the SDK keeps it on the session)."""
    connection = getattr(ctx.session, "_connection", None)
    return connection if isinstance(connection, Connection) else None


#: The client request the current task is relaying, if any.
current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "mcp_agg_caller", default=None
)
