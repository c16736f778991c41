"""The `mcp-agg` typer app: every command, in the order `--help` lists them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated

import typer

from mcp_agg import __version__
from mcp_agg.cli.call import call
from mcp_agg.cli.configs import check, import_
from mcp_agg.cli.login import login, logout
from mcp_agg.cli.serve import serve
from mcp_agg.cli.status import status
from mcp_agg.cli.tools import lock, tools

__all__ = ["app"]

app = typer.Typer(
    name="mcp-agg",
    help="An aggregating MCP gateway: one MCP server in front of all of yours.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help as written: Rich markup would take `[gateway.auth]` or `[default: ...]` in a
    # help string for a style tag and drop it.
    rich_markup_mode=None,
)


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"mcp-agg {__version__}")
        raise typer.Exit()


@app.callback()
def _app(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Options of the app itself, before any command (`--version`)."""


def _summary(command: Callable[..., None]) -> str:
    """A command's first paragraph, as one line."""
    doc = inspect.getdoc(command) or ""
    return " ".join(doc.split("\n\n")[0].split())


def _add(name: str, command: Callable[..., None]) -> None:
    """Register a command. The command list shows its whole first paragraph: click would
    cut it to fit one line."""
    app.command(name, short_help=_summary(command))(command)


_add("serve", serve)
_add("tools", tools)
_add("lock", lock)
_add("status", status)
_add("call", call)
_add("check", check)
_add("import", import_)
_add("login", login)
_add("logout", logout)
