"""The HTTP front: streamable HTTP at `/mcp`, served by uvicorn.

It replaces one piece of FastMCP's `run_http_async`: uvicorn's own signal handling
would kill the process before the lifespan (every backend) has unwound, and its
graceful shutdown gives the requests in flight a fixed time (FastMCP's 2 s), then cuts
their response bodies off. So the signals stay the gateway's (`mcp_agg.front.signals`),
and a stop signal drains the front (`mcp_agg.front.drain`: calls in flight are answered,
within `shutdown_grace`) before uvicorn is asked to stop, with nothing left to cut.

Every request's `Host` and `Origin` are checked before anything else (DNS-rebinding
protection, `mcp_agg.security.origin`). The session lifecycle is the SDK's and needs
nothing here: `initialize` returns `Mcp-Session-Id`, GET with it opens the standalone
SSE stream, DELETE ends the session, and an unknown or ended session id gets 404.
With `[gateway] session_secret` the ids are sealed and any replica of a fleet resumes
them (`mcp_agg.front.sealedsessions`).

FastMCP's defaults leave out SSE resumability (SEP-1699): no event store, so no priming
event and no `retry` field on a POST's stream, and nothing for `Last-Event-ID` to resume.
A gateway relays long calls, so the front keeps a bounded in-memory event store
(`mcp_agg.front.events`: 4096 events and 32 MiB) and tells clients to reconnect after
`_SSE_RETRY_MS`. A client that drops a POST's stream itself has still given up on its
call (`mcp_agg.front.exchanges` cancels it): what a resume recovers is what was sent on a
stream while the client was away, as when the server ends a stream mid-call.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import uvicorn
from fastmcp import FastMCP
from starlette.types import ASGIApp

from mcp_agg.config import GatewayConfig
from mcp_agg.front.bodylimit import BodyLimit, lift_sdk_cap
from mcp_agg.front.drain import Drain
from mcp_agg.front.events import BoundedEventStore
from mcp_agg.front.exchanges import Exchanges
from mcp_agg.front.listener import OpsListener, serving_ops
from mcp_agg.front.probes import Probes
from mcp_agg.front.sealedsessions import Resumption, seal_sessions
from mcp_agg.front.signals import Hurry, Reload, SignalFreeUvicorn, handle_signals
from mcp_agg.security.origin import HostOriginGuard, HostOriginPolicy

__all__ = ["serve_http"]

logger = logging.getLogger("mcp_agg")

#: uvicorn's own grace once drained: only idle connections and ended streams are left.
_CLOSE_TIMEOUT = 5
#: SSE events kept for resumption, across every session (oldest dropped first): at most
#: this many, and at most this many bytes of messages.
_SSE_EVENTS = 4096
_SSE_BYTES = 32 * 1024 * 1024
#: How soon a client reconnects to a stream the server ended (ms, the SSE `retry` field).
_SSE_RETRY_MS = 1000


async def serve_http(
    server: FastMCP[Any],
    *,
    host: str,
    port: int,
    log_level: str,
    settings: GatewayConfig,
    ops: OpsListener | None = None,
    on_reload: Reload | None = None,
    hurry: Hurry | None = None,
    resumption: Resumption | None = None,
) -> None:
    """Streamable HTTP at /mcp until drained after SIGINT/SIGTERM (a stop signal while
    still starting stops at once; `hurry` once it is stopping); SIGHUP calls
    `on_reload`, if given.

    `settings` gives `allowed_hosts`, `allowed_origins`, `max_message_bytes` and the
    drain's `drain_seconds` and `shutdown_grace`. `ops` is served meanwhile.
    `resumption` (with `session_secret`) seals session ids, for any replica to resume.
    """
    drain = Drain(grace=settings.shutdown_grace, serve_on=settings.drain_seconds)
    drain.install(server)
    inner, exchanges = _asgi_app(server, host, settings, resumption)
    app = Probes(inner)
    # log_config=None: uvicorn's own logging setup would send its logs to stdout, past
    # the gateway's stderr handler and its secret redaction; they propagate to it instead.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=_CLOSE_TIMEOUT,
    )
    web = SignalFreeUvicorn(config)
    async with anyio.create_task_group() as tg:

        def stop() -> None:
            if web.started:
                app.state = "draining"  # /readyz: 503 from now on
                drain.begin("received a stop signal")
            else:
                tg.cancel_scope.cancel()  # still starting the backends

        async def exit_when_drained() -> None:
            await drain.run(exchanges.idle)
            exchanges.close_streams()
            web.should_exit = True

        tg.start_soon(handle_signals, stop, on_reload, hurry)
        tg.start_soon(exit_when_drained)
        # As run_http_async does: the lifespan (every backend) spans the web server.
        async with serving_ops(ops), server._lifespan_manager():
            app.state = "ready"
            logger.info("serving MCP on http://%s:%d/mcp", host, port)
            await web.serve()
        tg.cancel_scope.cancel()


def _asgi_app(
    server: FastMCP[Any], host: str, settings: GatewayConfig, resumption: Resumption | None
) -> tuple[ASGIApp, Exchanges]:
    """FastMCP's MCP app behind our layers, outermost first: the Host/Origin guard, the
    body limit, the exchanges (returned too, for the drain)."""
    policy = HostOriginPolicy.for_bind(host, settings.allowed_hosts, settings.allowed_origins)
    logger.info(
        "HTTP front accepts Host %s and Origin %s (or none)",
        "any" if policy.allowed_hosts is None else ", ".join(policy.allowed_hosts),
        ", ".join(policy.allowed_origins) or "none",
    )
    # FastMCP's own guard is turned off explicitly (FASTMCP_HTTP_HOST_ORIGIN_PROTECTION
    # would otherwise stack a second one with other rules): ours replaces it, origin.py
    # says why.
    mcp_app = server.http_app(
        transport="http",
        host_origin_protection=False,
        event_store=BoundedEventStore(max_events=_SSE_EVENTS, max_bytes=_SSE_BYTES),
        retry_interval=_SSE_RETRY_MS,
    )
    lift_sdk_cap(mcp_app, settings.max_message_bytes)
    if resumption is not None:
        seal_sessions(mcp_app, resumption)
    exchanges = Exchanges(mcp_app)
    exchanges.install(server)
    return HostOriginGuard(BodyLimit(exchanges, settings.max_message_bytes), policy), exchanges
