"""The options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["ConfigOption", "JsonOption", "LogLevelOption", "ProfileOption"]

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="servers.toml or mcpServers JSON [default: $MCP_AGG_CONFIG, then ./servers.toml]",
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        "-p",
        help="Apply the config's [profiles.NAME] table [default: $MCP_AGG_PROFILE]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
LogLevelOption = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        help="debug, info, warning or error [default: info for serve, warning otherwise; "
        "$MCP_AGG_LOG_LEVEL]",
        show_default=False,
    ),
]
