"""`mcp-agg serve`: the gateway on stdio or streamable HTTP, until stopped."""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mcp_agg import __version__
from mcp_agg.cli.logs import quiet_relayed_deprecations, setup_logging
from mcp_agg.cli.options import ConfigOption, LogLevelOption, ProfileOption
from mcp_agg.cli.output import fail

if TYPE_CHECKING:
    from mcp_agg.backend.early import EarlyStarts
    from mcp_agg.config import Config
    from mcp_agg.core.gateway import Gateway
    from mcp_agg.front.earlyinit import EarlyInitialize
    from mcp_agg.front.listener import OpsListener

__all__ = ["serve"]

logger = logging.getLogger("mcp_agg")

Transport = Literal["stdio", "http"]
TransportOption = Annotated[Transport, typer.Option("--transport", "-t", help="stdio or http")]
HostOption = Annotated[str, typer.Option(help="HTTP bind address.")]
PortOption = Annotated[int, typer.Option(help="HTTP port; the endpoint is /mcp.")]
InsecureOption = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Serve HTTP (or --metrics-port) on a non-loopback address without "
        "[gateway.auth] (anyone who can reach the port may use every backend).",
    ),
]
MetricsPortOption = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        help="Also serve /metrics (and the other operations endpoints) on this port: "
        "with stdio, the only way to have them.",
        show_default=False,
    ),
]
MetricsHostOption = Annotated[
    str, typer.Option("--metrics-host", help="Bind address of --metrics-port.")
]
WatchOption = Annotated[
    bool,
    typer.Option(
        "--watch",
        help="Reload the config when its file changes (as SIGHUP does): servers are "
        "added, removed and reconfigured without dropping client sessions.",
    ),
]


def serve(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    transport: TransportOption = "stdio",
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    insecure: InsecureOption = False,
    metrics_port: MetricsPortOption = None,
    metrics_host: MetricsHostOption = "127.0.0.1",
    watch: WatchOption = False,
    log_level: LogLevelOption = None,
) -> None:
    """Run the gateway: stdio (for Claude Desktop and IDEs) or streamable HTTP at /mcp.

    SIGHUP reloads the config file (as --watch does on every change).
    """
    # Imported here, not at the top: `--help` imports every command's module and needs
    # none of this (docs/benchmarks.md, "Startup and import time").
    from mcp_agg.backend.early import EarlyStarts
    from mcp_agg.cli.runner import load, run
    from mcp_agg.front.earlyinit import EarlyInitialize

    setup_logging(log_level, "info")
    loaded = load(config, profile)
    if transport == "http":
        _check_exposure(loaded, host, "HTTP", "use every backend", insecure)
    if metrics_port is not None:
        _check_exposure(
            loaded, metrics_host, "--metrics-port", "use its operations endpoints", insecure
        )
    # A stdio client's `initialize` is answered from now on, not once the MCP stack is
    # imported (front/earlyinit.py); the stdio front takes stdin over from it.
    early_init: EarlyInitialize | None = None
    if transport == "stdio":
        settings = loaded.gateway
        early_init = EarlyInitialize(settings.name, __version__, limit=settings.max_message_bytes)
        early_init.start()

    async def main() -> None:
        # The stdio backends start now, before the MCP stack is imported: their own
        # start-up overlaps the gateway's imports (backend/early.py).
        async with EarlyStarts.started(loaded.replica_specs()) as early:
            with _stop_signals_held() as stops:
                _import_stack(transport)
            if stops:
                logger.info("stopped while starting")
                return  # leaving stops the early backends
            await _serve(
                loaded, early, early_init, transport, host, port, metrics_host, metrics_port, watch
            )

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
    loaded: Config,
    early: EarlyStarts,
    early_init: EarlyInitialize | None,
    transport: Transport,
    host: str,
    port: int,
    metrics_host: str,
    metrics_port: int | None,
    watch: bool,
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
    gateway.sessions.serve("http" if transport == "http" else "stdio")
    server = build_server(gateway, http=transport == "http")
    ops = None if metrics_port is None else _listen_ops(gateway, metrics_host, metrics_port)

    async def reload() -> None:
        await reload_from_file(gateway.reconfigurer)

    # Each backend's first connection and a summary: live on a terminal (HTTP front
    # only), else log lines. Never on stdout: in stdio mode that is the protocol.
    with startup.feedback(transport, sys.stderr) as observer:
        gateway.startup = SettleWhenReady(observer)  # the heap frozen once it serves
        async with anyio.create_task_group() as tg:
            if watch and loaded.source is not None:
                tg.start_soon(watch_config, loaded.source, reload)
            if transport == "http":
                from mcp_agg.front.http import serve_http
                from mcp_agg.front.sealedsessions import Resumption

                level = logging.getLevelName(logging.getLogger().level).lower()
                await serve_http(
                    server,
                    host=host,
                    port=port,
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


def _check_exposure(loaded: Config, host: str, what: str, risk: str, insecure: bool) -> None:
    """Refuse to listen on a non-loopback address without [gateway.auth], unless
    --insecure."""
    from mcp_agg.security.origin import is_loopback

    if loaded.gateway.auth is not None or is_loopback(host):
        return
    if not insecure:
        raise fail(
            2,
            f"refusing to serve {what} on {host} without authentication: anyone who can "
            f"reach it could {risk}. Configure [gateway.auth] in the config "
            "(see docs/team.md), bind to 127.0.0.1, or pass --insecure.",
        )
    logger.warning("serving %s on %s WITHOUT authentication (--insecure)", what, host)


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
