"""`mcp-agg call`: one tool called through the whole gateway, as a client would."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from mcp_agg.cli.logs import quiet_relayed_deprecations, setup_logging
from mcp_agg.cli.options import ConfigOption, JsonOption, LogLevelOption, ProfileOption
from mcp_agg.cli.output import fail

if TYPE_CHECKING:
    import mcp_types

__all__ = ["call"]


def call(
    tool: Annotated[str, typer.Argument(help="Exposed tool name, as `mcp-agg tools` lists it.")],
    args: Annotated[str, typer.Option("--args", "-a", help="Arguments as a JSON object.")] = "{}",
    config: ConfigOption = None,
    profile: ProfileOption = None,
    as_json: JsonOption = False,
    log_level: LogLevelOption = None,
) -> None:
    """Call one tool through the whole gateway and print its result."""
    # Imported here, not at the top: `--help` imports every command's module and needs
    # none of this (docs/benchmarks.md, "Startup and import time").
    from fastmcp import Client

    from mcp_agg.cli.runner import load, run
    from mcp_agg.core.gateway import Gateway
    from mcp_agg.front.server import build_server

    setup_logging(log_level, "warning")
    quiet_relayed_deprecations()
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        raise fail(2, f"--args is not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise fail(2, "--args must be a JSON object")
    server = build_server(Gateway(load(config, profile)))

    async def invoke() -> mcp_types.CallToolResult:
        # An in-memory MCP client: the call takes the same path as a client's over stdio.
        async with Client(server) as client:
            result: mcp_types.CallToolResult = await client.call_tool_mcp(tool, arguments)
            return result

    result = run(invoke)
    if as_json:
        typer.echo(result.model_dump_json(by_alias=True, exclude_none=True, indent=2))
    else:
        _print_result(result)
    if result.is_error:
        raise typer.Exit(1)


def _print_result(result: mcp_types.CallToolResult) -> None:
    """Text blocks as their text, other blocks as JSON; structured content if nothing else."""
    import mcp_types

    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            typer.echo(block.text)
        else:
            typer.echo(block.model_dump_json(by_alias=True, exclude_none=True))
    if result.structured_content is not None and not result.content:
        typer.echo(json.dumps(result.structured_content, indent=2))
