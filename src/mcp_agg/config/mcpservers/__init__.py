"""MCP client config files (Claude Desktop, VS Code, Cursor, Claude Code) as servers.toml.

`document` reads a file and finds its servers; `entry` translates one server; `rewrite`
puts each string in the gateway's `${VAR}` syntax; `secrets` finds the credentials held
in clear, and `needs` names the variables they and the clients' own variables become;
`envfile` reads VS Code's and Cursor's `envFile`.
"""

from __future__ import annotations

from mcp_agg.config.mcpservers.document import Translation, translate
from mcp_agg.config.mcpservers.needs import Variable

__all__ = ["Translation", "Variable", "translate"]
