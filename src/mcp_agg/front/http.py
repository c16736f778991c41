"""The HTTP front: streamable HTTP at `/mcp`, served by uvicorn.

It replaces one piece of FastMCP's `run_http_async`: uvicorn's own signal handling
would kill the process before the lifespan (every backend) has unwound, its
lifespan would start every backend before it listens (a starting replica must answer
`/readyz` with 503, `mcp_agg.front.probes`, not refuse connections, and answers a
client's `initialize` at once, `mcp_agg.front.starting`), and its
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
from contextlib import AbstractAsyncContextManager
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
from mcp_agg.front.listener import OpsListener, bind_port, serving_ops
from mcp_agg.front.probes import Probes, quiet_probe_access_log
from mcp_agg.front.sealedsessions import Resumption, seal_sessions
from mcp_agg.front.signals import Hurry, Reload, SignalFreeUvicorn, handle_signals
from mcp_agg.front.signin import quiet_signin_access_log
from mcp_agg.front.starting import HeldUntilStarted, lifespan_beside, serving_beside
from mcp_agg.security.origin import HostOriginPolicy
from mcp_agg.security.originguard import HostOriginGuard

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
#: Where MCP is served: FastMCP's default `streamable_http_path`.
_MCP_PATH = "/mcp"


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
    inner, exchanges, held, lifespan = _asgi_app(server, host, settings, resumption)
    app = Probes(inner, mcp_path=_MCP_PATH)
    try:
        # Bound now: a taken port fails before any backend starts.
        sock = bind_port(host, port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", host, port, exc)
        raise SystemExit(1) from None
    quiet_probe_access_log()
    quiet_signin_access_log()
    # log_config=None: uvicorn's own logging setup would send its logs to stdout, past
    # the gateway's stderr handler and its secret redaction; they propagate to it instead.
    # lifespan="off": uvicorn would run the app's lifespan (every backend's first
    # connection) before it listens, so a starting replica would refuse connections
    # instead of answering /readyz with 503; the lifespan is run below, beside it.
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=None,
        lifespan="off",
        timeout_graceful_shutdown=_CLOSE_TIMEOUT,
        # httptools (a C parser) in place of uvicorn's pure-Python h11: measured in
        # docs/performance.md, "The HTTP front".
        http="httptools",
    )
    web = SignalFreeUvicorn(config)
    starting = anyio.CancelScope()
    served = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:

            def stop() -> None:
                if app.state == "starting":
                    starting.cancel()  # still starting the backends: stop at once
                else:
                    app.state = "draining"  # /readyz: 503 from now on
                    drain.begin("received a stop signal")

            async def exit_when_drained() -> None:
                await drain.run(exchanges.idle)
                exchanges.close_streams()
                web.should_exit = True

            async def serve_web() -> None:
                try:
                    await web.serve(sockets=[sock])
                finally:
                    served.set()

            tg.start_soon(handle_signals, stop, on_reload, hurry)
            tg.start_soon(exit_when_drained)
            # The MCP app's own lifespan (the SDK's session manager, up in a moment: it no
            # longer enters the server's) before the first request is taken, then listening
            # at once: /healthz 200, /readyz 503 until the server's lifespan (every backend)
            # has started beside it; meanwhile `initialize` is answered, every other MCP
            # request held, the other routes 503. The lifespan then spans the web server
            # as in run_http_async.
            with serving_beside(server):
                async with serving_ops(ops), lifespan:
                    tg.start_soon(serve_web)
                    logger.info("listening on http://%s:%d (not ready until started)", host, port)
                    try:
                        with starting:
                            async with lifespan_beside(server) as started:
                                await started.wait()
                                held.settle(started=True)
                                app.state = "ready"
                                logger.info("serving MCP on http://%s:%d/mcp", host, port)
                                await served.wait()
                    finally:
                        held.settle(started=False)  # stopped or failed while starting
                    web.should_exit = True
                    await served.wait()
            tg.cancel_scope.cancel()
    finally:
        sock.close()


def _asgi_app(
    server: FastMCP[Any], host: str, settings: GatewayConfig, resumption: Resumption | None
) -> tuple[ASGIApp, Exchanges, HeldUntilStarted, AbstractAsyncContextManager[object]]:
    """FastMCP's MCP app behind our layers, outermost first: the Host/Origin guard, the
    body limit, what is held while starting, the exchanges (those two returned too, for
    the start and the drain); and the MCP app's lifespan (the SDK's session manager)."""
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
        path=_MCP_PATH,
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
    held = HeldUntilStarted(exchanges)
    guarded = HostOriginGuard(BodyLimit(held, settings.max_message_bytes), policy)
    return guarded, exchanges, held, mcp_app.lifespan(mcp_app)
