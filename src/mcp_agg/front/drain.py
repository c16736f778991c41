"""Stopping without cutting calls: SIGTERM drains the front.

What a stop signal (or, on stdio, the client closing stdin) starts, on either front:

1. for `drain_seconds` (HTTP front; 0 by default) the front serves as before, so that a
   load balancer still sending requests has time to notice the gateway going;
2. then every new request is refused with a JSON-RPC error, while the requests in
   flight get up to `shutdown_grace` to finish and be answered (notifications pass: a
   client may still cancel, and answer a backend's question during a call);
3. those still running are then cancelled (and with them their backend requests), each
   answered with a JSON-RPC error saying so;
4. the front stops once it has written every answer: no client is left with a cut-off
   body or an unanswered request. Another stop signal skips what is left of the waits.

`Drain` holds the policy and is the same for both fronts: it sees every request through
a context-tier middleware of the MCP server (`install`), which is where a request can be
refused or cancelled with an error of its own. Whether every answer has been written is
the front's to say (`Idle`): only the stdio front knows what reached stdout, only the
HTTP front which response bodies are complete.

-32000 is the code of both errors: the SDK answers a request it cuts off at shutdown
with it ("Connection closed"), so clients already treat it as "the server went away".
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from fastmcp import FastMCP
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

__all__ = ["Drain", "Idle"]

logger = logging.getLogger("mcp_agg")

#: Returns once the front has written an answer to every request it was sent.
Idle = Callable[[], Awaitable[None]]
#: How long answers already decided get to be written once the handlers have ended.
_WRITE_TIMEOUT = 5.0
#: Requests that stay open for as long as the client wants: not calls to wait for.
_STREAMS = frozenset({"subscriptions/listen"})


class Drain:
    """The front's shutdown (module docstring): begun by a stop signal, run by the front."""

    def __init__(self, *, grace: float, serve_on: float = 0.0) -> None:
        self._grace = grace
        self._serve_on = serve_on
        self._begun = anyio.Event()
        #: A second stop signal: skip what is left of the waits.
        self._cut = anyio.Event()
        self._refusing = False
        #: The cancel scope of each request being handled, and of each open stream.
        self._calls: set[anyio.CancelScope] = set()
        self._streams: set[anyio.CancelScope] = set()

    def install(self, server: FastMCP[Any]) -> None:
        """See every request `server` handles, on any front and in either protocol era."""
        server._mcp_server.middleware.append(self._middleware)

    def begin(self, why: str) -> None:
        """Start draining; when it has started already, skip what is left of the waits."""
        if not self._begun.is_set():
            logger.info("%s: draining", why)
            self._begun.set()
        elif not self._cut.is_set():
            logger.warning("%s again: cancelling the requests still in flight", why)
            self._cut.set()

    async def run(self, idle: Idle) -> None:
        """Once begun: the drain's steps, until the front has answered every request."""
        await self._begun.wait()
        if self._serve_on:
            await self._until(self._cut.wait, self._serve_on)
        self._refusing = True
        logger.info(
            "refusing new requests; %d in flight get up to %gs (shutdown_grace)",
            len(self._calls),
            self._grace,
        )
        for scope in self._streams:
            scope.cancel()
        answered = await self._until(idle, self._grace)
        if not answered:
            if self._calls:
                logger.warning("cancelling the %d requests still running", len(self._calls))
            for scope in self._calls:
                scope.cancel()
            answered = await self._until(idle, _WRITE_TIMEOUT, cuttable=False)
        if answered:
            logger.info("drained: every request answered")
        else:
            logger.warning("answers still unwritten after %gs: stopping", _WRITE_TIMEOUT)

    async def _until(
        self, wait: Callable[[], Awaitable[object]], within: float, *, cuttable: bool = True
    ) -> bool:
        """Await `wait()` for at most `within` seconds, or until cut; whether it returned."""
        done = False
        with anyio.move_on_after(within):
            async with anyio.create_task_group() as tg:

                async def waiting() -> None:
                    nonlocal done
                    await wait()
                    done = True
                    tg.cancel_scope.cancel()

                async def cut() -> None:
                    await self._cut.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(waiting)
                if cuttable:
                    tg.start_soon(cut)
        return done

    async def _middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.request_id is None:
            return await call_next(ctx)  # a notification: a cancellation must get through
        if self._refusing:
            raise MCPError(CONNECTION_CLOSED, "mcp-agg is shutting down: request refused")
        stream = ctx.method in _STREAMS
        scopes = self._streams if stream else self._calls
        with anyio.CancelScope() as scope:
            scopes.add(scope)
            try:
                return await call_next(ctx)
            finally:
                scopes.discard(scope)
        if stream:
            raise MCPError(CONNECTION_CLOSED, "mcp-agg is shutting down: the stream ends")
        raise MCPError(
            CONNECTION_CLOSED,
            f"mcp-agg is shutting down: {ctx.method} did not finish within shutdown_grace "
            f"({self._grace:g}s) and was cancelled",
        )
