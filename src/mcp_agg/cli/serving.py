"""`mcp-agg serve`'s long run: the gateway on its front until stopped.

It runs once the command line is gone (`longrun`), so it imports no typer and no command
module, and takes its options as a `Front`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mcp_agg.backend.early import EarlyStarts
from mcp_agg.cli.logs import quiet_relayed_deprecations
from mcp_agg.cli.output import fail
from mcp_agg.cli.runner import run

if TYPE_CHECKING:
    from mcp_agg.config import Config
    from mcp_agg.core.gateway import Gateway
    from mcp_agg.front.earlyinit import EarlyInitialize
    from mcp_agg.front.listener import OpsListener

__all__ = ["Front", "Transport", "serve_until_stopped"]

logger = logging.getLogger("mcp_agg")

Transport = Literal["stdio", "http"]


@dataclass(frozen=True)
class Front:
    """Where and how `serve` serves: its command-line options."""

    transport: Transport
    host: str
    port: int
    metrics_host: str
    metrics_port: int | None
    watch: bool


def serve_until_stopped(loaded: Config, early_init: EarlyInitialize | None, front: Front) -> None:
    """Start the stdio backends, import the MCP stack meanwhile, and serve the gateway on
    `front` until stopped. A config or catalog error ends it with exit code 2."""

    async def main() -> None:
        # The stdio backends start now, before the MCP stack is imported: their own
        # start-up overlaps the gateway's imports (backend/early.py).
        async with EarlyStarts.started(loaded.replica_specs()) as early:
            with _stop_signals_held() as stops:
                _import_stack(front.transport)
            if stops:
                logger.info("stopped while starting")
                return  # leaving stops the early backends
            await _serve(loaded, early, early_init, front)

    run(main)


def _import_stack(transport: Transport) -> None:
    """The MCP stack, the gateway and its front, imported while the early backends start
    (the other front is not: uvicorn and starlette cost the stdio front memory)."""
    started = time.perf_counter()
    importlib.import_module("mcp_agg.core.gateway")
    importlib.import_module("mcp_agg.front.server")
    importlib.import_module(f"mcp_agg.front.{transport}")
    quiet_relayed_deprecations()
    logger.info("imported the gateway in %.2fs", time.perf_counter() - started)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[list[int]]:
    """SIGINT and SIGTERM noted, not acted on, while the event loop is blocked importing:
    their default would end the process at once (the early backends left to the reaper)
    and the fronts' handlers are not installed yet. The caller stops if one came."""
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, _: received.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def _serve(
    loaded: Config, early: EarlyStarts, early_init: EarlyInitialize | None, front: Front
) -> None:
    """The gateway over `early`'s backends, on its front, until stopped; the stdio front
    takes stdin over from `early_init`."""
    import anyio

    from mcp_agg.console import startup
    from mcp_agg.core.gateway import Gateway
    from mcp_agg.core.heap import SettleWhenReady
    from mcp_agg.core.reload import reload_from_file, watch_config
    from mcp_agg.front.server import build_server

    gateway = Gateway(loaded, early)
    gateway.sessions.serve(front.transport)
    server = build_server(gateway, http=front.transport == "http")
    ops = (
        None
        if front.metrics_port is None
        else _listen_ops(gateway, front.metrics_host, front.metrics_port)
    )

    async def reload() -> None:
        await reload_from_file(gateway.reconfigurer)

    # Each backend's first connection and a summary: live on a terminal (HTTP front
    # only), else log lines. Never on stdout: in stdio mode that is the protocol.
    with startup.feedback(front.transport, sys.stderr) as observer:
        gateway.startup = SettleWhenReady(observer)  # the heap frozen once it serves
        async with anyio.create_task_group() as tg:
            if front.watch and loaded.source is not None:
                tg.start_soon(watch_config, loaded.source, reload)
            if front.transport == "http":
                from mcp_agg.front.http import serve_http
                from mcp_agg.front.sealedsessions import Resumption

                level = logging.getLevelName(logging.getLogger().level).lower()
                await serve_http(
                    server,
                    host=front.host,
                    port=front.port,
                    log_level=level,
                    settings=loaded.gateway,
                    ops=ops,
                    on_reload=reload,
                    hurry=gateway.hurry,
                    resumption=Resumption.of(gateway),
                )
            else:
                from mcp_agg.front.stdio import serve_stdio

                await serve_stdio(
                    server,
                    settings=loaded.gateway,
                    ops=ops,
                    on_reload=reload,
                    hurry=gateway.hurry,
                    early=early_init,
                )
            tg.cancel_scope.cancel()


def _listen_ops(gateway: Gateway, host: str, port: int) -> OpsListener:
    """The `--metrics-port` listener, bound now: a taken port fails before any backend."""
    from mcp_agg.front.listener import ops_listener
    from mcp_agg.front.ops import ops_routes

    routes = ops_routes(gateway)
    if not routes:
        logger.warning("--metrics-port: no operations endpoint is on ([gateway] metrics)")
    try:
        return ops_listener(routes, host=host, port=port, settings=gateway.config.gateway)
    except OSError as exc:
        raise fail(1, f"--metrics-port: cannot listen on {host}:{port}: {exc}") from None
