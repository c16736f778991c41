"""The operations routes (`/metrics`, `/admin/...`) on a listener of their own.

`serve --metrics-port` serves them beside either front: the port is bound before the
gateway starts, it answers while the backends are still starting, and it stops with
the gateway. It is one more uvicorn server without signal handling of its own, which
logs to stderr through the root logger (never to stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from mcp_agg.config import GatewayConfig
from mcp_agg.front.signals import SignalFreeUvicorn
from mcp_agg.security.origin import HostOriginPolicy
from mcp_agg.security.originguard import HostOriginGuard

__all__ = ["OpsListener", "bind_port", "ops_listener", "serving_ops"]

logger = logging.getLogger("mcp_agg")

#: How long the operations listener may take to finish its requests on shutdown.
_OPS_GRACE = 2


@dataclass(frozen=True)
class OpsListener:
    """The operations routes on a port of their own (`serve --metrics-port`)."""

    app: ASGIApp
    sock: socket.socket

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def ops_listener(
    routes: Sequence[BaseRoute], *, host: str, port: int, settings: GatewayConfig
) -> OpsListener:
    """Bind `host:port` now (raises OSError: a taken port fails before any backend
    starts) for `routes`, behind the Host/Origin guard as the HTTP front is."""
    policy = HostOriginPolicy.for_bind(host, settings.allowed_hosts, settings.allowed_origins)
    app = HostOriginGuard(Starlette(routes=list(routes)), policy)
    return OpsListener(app, bind_port(host, port))


def bind_port(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (not yet listening); OSError if taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.asynccontextmanager
async def serving_ops(ops: OpsListener | None) -> AsyncIterator[None]:
    """Serve `ops` while the block runs, then finish its requests and close it.

    Its server runs in a task of its own, outside the caller's cancel scopes: a stop
    signal cancels the gateway, and the listener is then shut down, not cancelled.
    """
    if ops is None:
        yield
        return
    # No log_config: uvicorn's loggers propagate to the root logger (stderr).
    config = uvicorn.Config(
        ops.app, lifespan="off", log_config=None, timeout_graceful_shutdown=_OPS_GRACE
    )
    web = SignalFreeUvicorn(config)
    task = asyncio.create_task(web.serve(sockets=[ops.sock]), name="mcp-agg ops listener")
    task.add_done_callback(_report_ops_failure)
    logger.info("serving operations endpoints on %s", ops.url)
    try:
        yield
    finally:
        web.should_exit = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(_OPS_GRACE + 1):
            await asyncio.wait({task})
        if not task.done():
            task.cancel()
        ops.sock.close()


def _report_ops_failure(task: asyncio.Task[None]) -> None:
    # The gateway goes on without its operations endpoints: the protocol matters more.
    if not task.cancelled() and task.exception() is not None:
        logger.error("operations listener failed", exc_info=task.exception())
