"""`max_message_bytes` on the HTTP front: a larger body is refused (413) unread.

The MCP SDK's streamable HTTP session manager has a cap of its own, 4 MiB, which
FastMCP gives no way to set, and answers it with a plain-text 413. For a gateway that
is the wrong place for the limit: the same call would pass over stdio (and to a stdio
backend) and fail over HTTP. So `BodyLimit` enforces `max_message_bytes` in front of
the app and answers a JSON-RPC error (-32600, `"id": null`), as the stdio front answers
a line over the same limit; `lift_sdk_cap` sets the SDK's cap to the same value, so
that it never decides first.

A body that says its length (`Content-Length`) is refused before any of it is read;
one sent in chunks is read up to the limit and refused past it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastmcp.server.http import StreamableHTTPASGIApp
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "lift_sdk_cap", "read_body", "replay", "session_manager"]

logger = logging.getLogger(__name__)


class BodyLimit:
    """ASGI middleware: POST bodies of at most `limit` bytes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server keeps the body to its length
            return
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await self.app(scope, replay(chunks, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"message refused: larger than the limit of {self.limit} bytes "
            "([gateway] max_message_bytes)"
        )
        error = {"code": -32600, "message": message}
        response = JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=413)
        await response(scope, receive, send)


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The request body (bounded by `BodyLimit` in front), and a `receive` that gives it
    again."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = b"".join(m.get("body", b"") for m in messages)
    return body, replay(messages, receive)


def replay(chunks: list[Message], receive: Receive) -> Receive:
    """`receive`, giving back the messages already read first."""
    pending = list(reversed(chunks))

    async def replaying() -> Message:
        return pending.pop() if pending else await receive()

    return replaying


def lift_sdk_cap(app: Starlette, limit: int) -> None:
    """Set the SDK's body cap in FastMCP's `app` to `limit` (module docstring).

    FastMCP builds the SDK's session manager when the app's lifespan starts, so the cap
    is set right after, before uvicorn accepts a connection.
    """
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        async with started(instance) as state:
            manager = session_manager(app)
            if manager is None:
                logger.warning("HTTP bodies stay capped at the MCP SDK's own limit")
            else:
                manager.max_request_body_size = limit
                manager.asgi_app.max_body_size = limit
            yield state

    app.router.lifespan_context = lifespan


def session_manager(app: Starlette) -> StreamableHTTPSessionManager | None:
    """The SDK's session manager behind FastMCP's MCP route (through its auth layer)."""
    for route in app.routes:
        handler = getattr(route, "app", None)
        for _ in range(8):  # a few middleware layers deep at most
            if isinstance(handler, StreamableHTTPASGIApp):
                return handler.session_manager
            handler = getattr(handler, "app", None)
    return None
