"""The part of MCP that the plain JSON-RPC test backends answer alike: `initialize`,
`tools/list` and `ping`. Without the MCP SDK to import, such a backend starts in
milliseconds. A backend script imports this module as its sibling."""

from __future__ import annotations

from typing import Any

PROTOCOL = "2025-11-25"


def answer(request: dict[str, Any], server: str, tools: list[str]) -> dict[str, Any] | None:
    """The reply to `request` from the backend `server` with `tools`: "method not found" for
    anything else; None for a notification."""
    method = request.get("method")
    if "id" not in request:
        return None
    if method == "initialize":
        result: object = {
            "protocolVersion": PROTOCOL,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": server, "version": "1"},
        }
    elif method == "tools/list":
        schema = {"type": "object"}
        result = {"tools": [{"name": name, "inputSchema": schema} for name in tools]}
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "no"}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}
