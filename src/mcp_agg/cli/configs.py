"""`mcp-agg check` and `mcp-agg import`: the config file alone, nothing started."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mcp_agg.cli.options import ConfigOption, ProfileOption
from mcp_agg.cli.output import fail
from mcp_agg.errors import ConfigError

if TYPE_CHECKING:
    from mcp_agg.config import Imported

__all__ = ["check", "import_"]


def check(config: ConfigOption = None, profile: ProfileOption = None) -> None:
    """Validate the config without starting anything (every profile is checked)."""
    # Imported here, not at the top: `--help` imports every command's module and needs
    # none of this; `check` needs the config alone (docs/benchmarks.md, "Startup and import time").
    from mcp_agg.config import find_config, load_config

    path = None
    try:
        path = find_config(config)
        loaded = load_config(path, profile=profile)
        if loaded.gateway.tracing is not None:
            from mcp_agg.observability import tracing

            tracing.require_extra(loaded.gateway.tracing, source=path)
    except ConfigError as exc:
        raise fail(2, f"config error: {exc}") from None
    specs = loaded.replica_specs()
    groups = {s.group for s in specs}
    typer.echo(f"{path}: ok ({len(groups)} servers, {len(specs)} replicas)")


def import_(
    file: Annotated[
        Path,
        typer.Argument(
            help="An MCP client's JSON config: Claude Desktop, VS Code (.vscode/mcp.json),"
            " Cursor or Claude Code (.mcp.json)."
        ),
    ],
) -> None:
    """Print the servers.toml equivalent of an MCP client's JSON config.

    Secrets in the file become ${VAR} references; stderr lists the variables to set.
    """
    from mcp_agg.config import import_mcp_servers  # not for --help

    try:
        imported = import_mcp_servers(file)
    except ConfigError as exc:
        raise fail(2, f"config error: {exc}") from None
    _print_needs(imported)
    typer.echo(imported.toml, nl=False)


def _print_needs(imported: Imported) -> None:
    """The notes and the variables to set, on stderr: stdout is the file itself."""
    for note in imported.notes:
        typer.echo(f"mcp-agg: note: {note}", err=True)
    if not imported.variables:
        return
    typer.echo(
        "mcp-agg: the config references these environment variables;"
        " set them where the gateway runs:",
        err=True,
    )
    width = max(len(v.name) for v in imported.variables)
    for variable in imported.variables:
        typer.echo(f"  {variable.name.ljust(width)}  {variable.why}", err=True)
