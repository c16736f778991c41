"""`mcp-agg check` and `mcp-agg import`: the config file alone, nothing started."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mcp_agg.cli.options import ConfigOption, ProfileOption
from mcp_agg.cli.output import fail
from mcp_agg.config import find_config, load_config, mcp_servers_to_toml
from mcp_agg.errors import ConfigError
from mcp_agg.observability import tracing

__all__ = ["check", "import_"]


def check(config: ConfigOption = None, profile: ProfileOption = None) -> None:
    """Validate the config without starting anything (every profile is checked)."""
    path = None
    try:
        path = find_config(config)
        loaded = load_config(path, profile=profile)
        if loaded.gateway.tracing is not None:
            tracing.require_extra(loaded.gateway.tracing, source=path)
    except ConfigError as exc:
        raise fail(2, f"config error: {exc}") from None
    specs = loaded.replica_specs()
    groups = {s.group for s in specs}
    typer.echo(f"{path}: ok ({len(groups)} servers, {len(specs)} replicas)")


def import_(
    file: Annotated[Path, typer.Argument(help="A Claude Desktop style mcpServers JSON file.")],
) -> None:
    """Print the servers.toml equivalent of an mcpServers JSON file."""
    try:
        typer.echo(mcp_servers_to_toml(file), nl=False)
    except ConfigError as exc:
        raise fail(2, f"config error: {exc}") from None
