"""The session every backend transport opens: results relayed as the backend sent them.

The SDK session validates structured content against the backend's output schema,
turning a backend's schema slip into a gateway error. The end client validates what it
receives; a relay must pass results through as they are.
"""

from __future__ import annotations

import mcp_types
from fastmcp.client.transports.base import TransportOptions
from mcp.client.session import ClientSession

__all__ = ["RelaySession", "relay_options"]


class RelaySession(ClientSession):
    """A client session that relays results without policing their output schema."""

    async def validate_tool_result(self, name: str, result: mcp_types.CallToolResult) -> None:
        return None


def relay_options() -> TransportOptions:
    # forward_incoming_headers stays False: the caller's Authorization header must
    # never reach a backend (MCP security best practices, no token passthrough).
    return TransportOptions(session_class=RelaySession, forward_incoming_headers=False)
