"""mcp-agg: an aggregating MCP gateway."""

from __future__ import annotations

__version__ = "0.1.0"
