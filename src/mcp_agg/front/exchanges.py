"""The HTTP front's exchanges: which are still open, and which a client dropped.

Two things the MCP SDK's streamable HTTP transport does not do for a gateway:

- A handshake-era POST whose client disconnects before its answer keeps running: the SDK
  ends the response stream, not the request (in the modern era it does cancel it: there,
  closing the stream is how a client cancels). A gateway's call holds a backend request
  and a bulkhead slot for as long as it runs. So when a client leaves a request on a
  session unanswered, `Exchanges` sends that session, on the client's behalf, the
  `notifications/cancelled` a client that gives up sends: the SDK cancels the handler,
  and with it the backend request, as if the client had said so itself.
- Knowing when every answer has been written, for the drain (`idle`): the POSTs whose
  response has not ended are counted. The GET streams, which end only when the client
  or the server ends them, are ended at shutdown with their closing chunk
  (`close_streams`), rather than cut off by uvicorn when its own grace runs out.

Which request a POST carries is told by the server itself, not read back from the body:
each exchange rides in its request's ASGI `state`, where a context-tier middleware of the
MCP server (`install`) finds it and notes the id of the request it handles.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastmcp import FastMCP
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import RequestId
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Exchanges"]

logger = logging.getLogger(__name__)

#: Headers of the client's request that the cancellation does not take over.
_OWN_HEADERS = frozenset({b"content-length", b"content-type", b"accept", b"transfer-encoding"})
#: How long the cancellation sent for a client that left may take.
_CANCEL_TIMEOUT = 5.0
#: The exchange's key in its request's ASGI `state`.
_STATE_KEY = "mcp_agg.exchange"


@dataclass(slots=True, eq=False)
class _Exchange:
    """One request and its response, as they pass (state, compared by identity)."""

    #: The JSON-RPC requests the POST carried, as the server handled them.
    request_ids: list[RequestId] = field(default_factory=list)
    started: bool = False
    complete: bool = False
    disconnected: bool = False

    def watch(self, receive: Receive, send: Send) -> tuple[Receive, Send]:
        """`receive` and `send` that record what passes through them."""

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                self.complete = True
            await send(message)

        return receiving, sending


class Exchanges:
    """ASGI middleware around the MCP app (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._open: set[_Exchange] = set()
        self._closed = anyio.Event()
        self._streams: dict[_Exchange, anyio.CancelScope] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "GET"):
            await self.app(scope, receive, send)
        elif scope["method"] == "GET":
            await self._stream(scope, receive, send)
        else:
            await self._post(scope, receive, send)

    def install(self, server: FastMCP[Any]) -> None:
        """Have `server` tell each exchange the id of the request it carries."""
        server._mcp_server.middleware.append(self._note_request)

    async def idle(self) -> None:
        """Returns once no POST is waiting for the end of its answer."""
        while self._open:
            await self._closed.wait()

    def close_streams(self) -> None:
        """End every GET stream under way (at shutdown, once drained)."""
        for exchange, scope in self._streams.items():
            if exchange.started:
                scope.cancel()

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange()
        state = {**scope.get("state", {}), _STATE_KEY: exchange}
        self._open.add(exchange)
        try:
            await self.app({**scope, "state": state}, *exchange.watch(receive, send))
        finally:
            self._open.discard(exchange)
            if not self._open:
                self._closed.set()
                self._closed = anyio.Event()
            if exchange.disconnected and not exchange.complete:
                with anyio.move_on_after(_CANCEL_TIMEOUT, shield=True):
                    await self._cancel_for(scope, exchange.request_ids)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = _Exchange()
        receiving, sending = exchange.watch(receive, send)
        with anyio.CancelScope() as cancel:
            self._streams[exchange] = cancel
            try:
                await self.app(scope, receiving, sending)
            finally:
                del self._streams[exchange]
        if cancel.cancelled_caught and exchange.started and not exchange.complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _cancel_for(self, scope: Scope, request_ids: list[RequestId]) -> None:
        """Cancel, on their session, the requests whose client left before their answer."""
        if "mcp-session-id" not in Headers(scope=scope):
            return  # the modern era cancels them itself
        for request_id in request_ids:
            logger.info("client left before the answer to request %r: cancelling it", request_id)
            body = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": request_id, "reason": "the client disconnected"},
                }
            ).encode()
            raw = [(k, v) for k, v in scope["headers"] if k.lower() not in _OWN_HEADERS]
            raw += [
                (b"content-type", b"application/json"),
                (b"accept", b"application/json, text/event-stream"),
                (b"content-length", str(len(body)).encode()),
            ]
            await self.app({**scope, "headers": raw}, _once(body), _discard)

    async def _note_request(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """The server's middleware: note each request's id on the exchange carrying it."""
        if ctx.request_id is not None and ctx.method != "initialize":
            state = getattr(ctx.request, "scope", {}).get("state", {})
            exchange = state.get(_STATE_KEY)
            if isinstance(exchange, _Exchange):
                exchange.request_ids.append(ctx.request_id)
        return await call_next(ctx)


def _once(body: bytes) -> Receive:
    """A request's `receive` whose body is `body`."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _discard(message: Message) -> None:
    """Nobody is there to read the answer (a 202)."""
