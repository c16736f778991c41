"""The `mcp-agg` typer app: every command, in the order `--help` lists them."""

from __future__ import annotations

import typer

from mcp_agg.cli.call import call
from mcp_agg.cli.configs import check, import_
from mcp_agg.cli.serve import serve
from mcp_agg.cli.status import status
from mcp_agg.cli.tools import lock, tools

__all__ = ["app", "main"]

app = typer.Typer(
    name="mcp-agg",
    help="An aggregating MCP gateway: one MCP server in front of all of yours.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.command()(tools)
app.command()(lock)
app.command()(status)
app.command()(call)
app.command()(check)
app.command("import")(import_)


def main() -> None:
    app()
