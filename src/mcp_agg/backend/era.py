"""Which MCP era a backend session speaks, and what differs between the two for a relay.

The handshake era (up to 2025-11-25) has sessions, `ping`, `logging/setLevel`,
server-to-client requests during a call and unsolicited `list_changed`. The modern era
(2026-07-28) has none of them: a log level travels in each request's `_meta`, a server
that needs the client's input answers with an input-required result, and changes come
on a `subscriptions/listen` stream.
"""

from __future__ import annotations

from typing import Any

from fastmcp import Client
from mcp_types import LOG_LEVEL_META_KEY, LoggingLevel
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

__all__ = ["announces_changes", "is_modern", "takes_log_level", "with_log_level"]


def is_modern(client: Client[Any]) -> bool:
    """Whether the client's session negotiated the modern era."""
    return client.session.protocol_version in MODERN_PROTOCOL_VERSIONS


def takes_log_level(client: Client[Any]) -> bool:
    """Whether `logging/setLevel` is for this session: a handshake-era session of a
    backend that logs (on the modern era the level travels in each request)."""
    caps = client.server_capabilities
    return caps is not None and caps.logging is not None and not is_modern(client)


def announces_changes(client: Client[Any]) -> bool:
    """Whether the backend says it announces list changes or resource updates (on the
    modern era, on a `subscriptions/listen` stream; FastMCP 4.1 servers do not)."""
    caps = client.server_capabilities
    if caps is None:
        return False
    lists = (caps.tools, caps.prompts, caps.resources)
    return any(cap is not None and cap.list_changed for cap in lists) or bool(
        caps.resources is not None and caps.resources.subscribe
    )


def with_log_level(params: dict[str, Any], level: LoggingLevel | None) -> dict[str, Any]:
    """`params` asking a modern-era backend for log messages from `level` up.

    The modern era has no `logging/setLevel`: a request that wants the backend's log
    messages says so in its own `_meta`.
    """
    if level is None:
        return params
    meta = dict(params.get("_meta") or {})
    meta.setdefault(LOG_LEVEL_META_KEY, level)
    return {**params, "_meta": meta}
