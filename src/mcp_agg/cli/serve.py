"""`mcp-agg serve`: the gateway on stdio or streamable HTTP, until stopped."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mcp_agg import __version__
from mcp_agg.cli.logs import setup_logging
from mcp_agg.cli.longrun import hand_over
from mcp_agg.cli.options import ConfigOption, LogLevelOption, ProfileOption
from mcp_agg.cli.output import fail

if TYPE_CHECKING:
    from mcp_agg.config import Config
    from mcp_agg.front.earlyinit import EarlyInitialize

__all__ = ["serve"]

logger = logging.getLogger("mcp_agg")

TransportOption = Annotated[
    Literal["stdio", "http"], typer.Option("--transport", "-t", help="stdio or http")
]
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
    from mcp_agg.cli.runner import load
    from mcp_agg.cli.serving import Front, serve_until_stopped
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

    # The gateway runs once typer has returned and the command line is gone (longrun.py).
    hand_over(
        functools.partial(
            serve_until_stopped,
            loaded,
            early_init,
            Front(transport, host, port, metrics_host, metrics_port, watch),
        )
    )


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
