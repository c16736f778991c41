"""The `mcp-agg` command line: serve, tools, lock, status, call, check, import, login.

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error. Everything but a
command's own output goes to stderr; in `serve --transport stdio`, stdout is the protocol.

`commands` is the typer app; each command is in a module of its own (`serve`, `tools`
for tools and lock, `status`, `call`, `configs` for check and import, `login` for login
and logout), sharing `options`, `output`, `logs` and `runner`.

A command's module imports what only running it needs (the config, the gateway, the MCP
stack) inside the command: `--help` imports every command's module, and stays fast.
`serve` runs the gateway once the command line is gone (`longrun`).
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """The `mcp-agg` program."""
    from mcp_agg.cli.longrun import run_command_line

    run_command_line()
