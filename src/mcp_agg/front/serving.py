"""Serving the gateway on stdio or streamable HTTP, stoppable by SIGINT and SIGTERM,
and reloading its config on SIGHUP.

Both fronts replace one piece of FastMCP's `run_*_async`, for the same reason: a stop
signal must always unwind the lifespan, which stops and reaps every backend.
- stdio: FastMCP reads stdin in a worker thread, and a blocked thread read cannot be
  cancelled, so the server would wait for the client's next line before it could stop.
  Here stdin and stdout are driven by the event loop (when they are pipes, sockets or a
  terminal; a regular file falls back to FastMCP's threads).
- HTTP: uvicorn takes over SIGINT/SIGTERM while it serves and raises the signal again
  once it has shut down, which kills the process before the lifespan has unwound. Here
  the signals stay ours, and a signal asks uvicorn to shut down gracefully.

SIGHUP (when the caller gives `on_reload`) starts a reload beside the serving, and
signals keep being handled while it runs.

The HTTP front also checks `Host` and `Origin` before anything else (DNS-rebinding
protection, `mcp_agg.security.origin`), for `/mcp` and the operations routes beside it.
The session lifecycle is the SDK's and needs nothing here:
`initialize` returns `Mcp-Session-Id`, GET with it opens the standalone SSE stream,
DELETE ends the session, and an unknown or ended session id gets 404.

Either front may also serve the operations routes (`/metrics`, `/admin/...`) on a
listener of their own (`serve --metrics-port`, `OpsListener`): its port is bound before
the gateway starts, it answers while the backends are still starting, and it stops
with the gateway. It is one more uvicorn server without signal handling of its own,
which logs to stderr through the root logger (never to stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn
from fastmcp import FastMCP
from fastmcp.server.context import reset_transport, set_transport
from mcp.server.stdio import stdio_server
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from mcp_agg.config import GatewayConfig
from mcp_agg.security.origin import HostOriginGuard, HostOriginPolicy

__all__ = ["OpsListener", "ops_listener", "serve_http", "serve_stdio"]

logger = logging.getLogger("mcp_agg")

#: Longest JSON-RPC line accepted from the client (a large tool argument fits).
_MAX_LINE = 64 * 1024 * 1024
#: How long the operations listener may take to finish its requests on shutdown.
_OPS_GRACE = 2


def _streamable(fd: int) -> bool:
    """Whether the event loop can drive this descriptor (a pipe, socket or terminal)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


class _EventLoopStdio:
    """The protocol's stdin and stdout, driven by the event loop instead of threads.

    Reading in the loop makes the server cancellable (see the module docstring), and
    writing in the loop saves a thread hand-off per message. While serving, fd 0 reads
    the null device and fd 1 goes to stderr, so a stray `print` or a child that inherits
    them cannot corrupt the protocol stream; both are restored on exit.
    """

    def __init__(self) -> None:
        self._in = os.dup(0)
        self._out = os.dup(1)
        self._saved = (os.dup(0), os.dup(1))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        self._writer: asyncio.StreamWriter | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_LINE, loop=loop)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
            os.fdopen(self._in, "rb", buffering=0),
        )
        try:
            while line := await reader.readline():
                yield line.decode("utf-8", errors="replace")
        finally:
            transport.close()

    async def write(self, text: str) -> None:
        if self._writer is None:
            loop = asyncio.get_running_loop()
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(self._out, "wb", buffering=0)
            )
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    def restore(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for fd, saved in zip((0, 1), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)


#: Reloads the config (`mcp_agg.core.reload.reload_from_file`); must not raise.
Reload = Callable[[], Coroutine[Any, Any, None]]
#: A stop signal while stopping: make it quick (`Gateway.hurry`); False when not stopping.
Hurry = Callable[[], bool]


async def _handle_signals(
    stop: Callable[[], None], on_reload: Reload | None, hurry: Hurry | None
) -> None:
    """SIGINT/SIGTERM call `stop`, or `hurry` once the gateway is stopping anyway; SIGHUP
    starts `on_reload` (in a task of its own).

    Without `on_reload` SIGHUP is left alone (its default ends the process).
    """
    wanted = [signal.SIGINT, signal.SIGTERM]
    if on_reload is not None:
        wanted.append(signal.SIGHUP)
    stopped = False
    async with anyio.create_task_group() as reloads:
        with anyio.open_signal_receiver(*wanted) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP and on_reload is not None:
                    logger.info("received SIGHUP, reloading the config")
                    reloads.start_soon(on_reload, name="reload")
                    continue
                name = signal.Signals(signum).name
                if hurry is not None and hurry():
                    continue  # the gateway was stopping already: now it hurries
                if stopped:
                    continue
                logger.info("received %s, shutting down", name)
                stopped = True
                stop()


async def serve_stdio(
    server: FastMCP[Any],
    *,
    ops: OpsListener | None = None,
    on_reload: Reload | None = None,
    hurry: Hurry | None = None,
) -> None:
    """What `server.run_stdio_async()` does, with stdin read by the event loop.

    Returns on stdin EOF (the client went away) or on SIGINT/SIGTERM; SIGHUP calls
    `on_reload`, and a stop signal while stopping `hurry`, if given. `ops` is served
    meanwhile.
    """
    serving = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        # Signals are heard until the end: the stop itself may be asked to hurry.
        tg.start_soon(_handle_signals, serving.cancel, on_reload, hurry)
        with serving:
            async with _serving_ops(ops):
                await _serve_stdio(server)
        tg.cancel_scope.cancel()


async def _serve_stdio(server: FastMCP[Any]) -> None:
    token = set_transport("stdio")
    try:
        # FastMCP has no public way to serve stdio with a given stdin stream: its
        # lifespan manager and low-level server are used here as run_stdio_async does.
        stdio = _EventLoopStdio() if _streamable(0) and _streamable(1) else None
        try:
            async with (
                server._lifespan_manager(),
                stdio_server(stdin=stdio, stdout=stdio) as (read_stream, write_stream),  # type: ignore[arg-type]
            ):
                low_level = server._mcp_server
                await low_level.run(
                    read_stream, write_stream, low_level.create_initialization_options()
                )
        finally:
            if stdio is not None:
                stdio.restore()
    finally:
        reset_transport(token)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the gateway's handler decides."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
) -> None:
    """Streamable HTTP at /mcp; SIGINT/SIGTERM stop it gracefully (`hurry` once it is
    stopping), SIGHUP calls `on_reload`, if given.

    `settings` gives `allowed_hosts` and `allowed_origins`. `ops` is served meanwhile.
    """
    policy = HostOriginPolicy.for_bind(host, settings.allowed_hosts, settings.allowed_origins)
    logger.info(
        "HTTP front accepts Host %s and Origin %s (or none)",
        "any" if policy.allowed_hosts is None else ", ".join(policy.allowed_hosts),
        ", ".join(policy.allowed_origins) or "none",
    )
    # FastMCP's own guard is turned off explicitly (FASTMCP_HTTP_HOST_ORIGIN_PROTECTION
    # would otherwise stack a second one with other rules): ours replaces it, origin.py
    # says why.
    app = HostOriginGuard(server.http_app(transport="http", host_origin_protection=False), policy)
    # log_config=None: uvicorn's own logging setup would send its logs to stdout, past
    # the gateway's stderr handler and its secret redaction; they propagate to it instead.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    web = _Uvicorn(config)
    async with anyio.create_task_group() as tg:

        def stop() -> None:
            if web.started:
                web.should_exit = True  # let in-flight requests finish
            else:
                tg.cancel_scope.cancel()  # still starting the backends

        tg.start_soon(_handle_signals, stop, on_reload, hurry)
        # As run_http_async does: the lifespan (every backend) spans the web server.
        async with _serving_ops(ops), server._lifespan_manager():
            logger.info("serving MCP on http://%s:%d/mcp", host, port)
            await web.serve()
        tg.cancel_scope.cancel()


# ---------------------------------------------------------------------------- operations


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
    return OpsListener(app, _bind(host, port))


def _bind(host: str, port: int) -> socket.socket:
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
async def _serving_ops(ops: OpsListener | None) -> AsyncIterator[None]:
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
    web = _Uvicorn(config)
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
