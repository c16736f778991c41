"""Claude Desktop style `{"mcpServers": {...}}` JSON, translated to the servers.toml document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp_agg.config.validation import decode
from mcp_agg.errors import ConfigError

__all__ = ["mcp_servers_to_raw", "parse_mcp_servers"]

_TRANSPORTS = {
    "stdio": None,
    "http": "http",
    "streamable-http": "http",
    "streamablehttp": "http",
    "streamable_http": "http",
    "sse": "sse",
}
_KEYS = {"command", "args", "env", "cwd", "url", "headers", "type", "transport", "disabled"}


def parse_mcp_servers(text: str, path: Path) -> dict[str, Any]:
    """The servers.toml document of an mcpServers JSON file's `text`."""
    return mcp_servers_to_raw(_parse_json(text, path), path)


def _parse_json(text: str, path: Path) -> dict[str, Any]:
    data = decode(json.loads, text, "JSON", path)
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", source=path)
    return data


def mcp_servers_to_raw(data: dict[str, Any], source: Path | None) -> dict[str, Any]:
    """Turn `{"mcpServers": {name: {...}}}` into the servers.toml structure."""
    servers = data.get("mcpServers")
    if not isinstance(servers, dict):
        raise ConfigError('expected an object with an "mcpServers" object', source=source)
    unknown_top = set(data) - {"mcpServers"}
    if unknown_top:
        raise ConfigError(f"unknown key {sorted(unknown_top)[0]!r}", source=source)
    return {"servers": [_server(name, entry, source) for name, entry in servers.items()]}


def _server(name: str, entry: Any, source: Path | None) -> dict[str, Any]:
    """One `[[servers]]` entry from the mcpServers entry `name`."""
    loc = f"mcpServers.{name}"
    if not isinstance(entry, dict):
        raise ConfigError("expected an object", source=source, loc=loc)
    for key in entry:
        if key not in _KEYS:
            raise ConfigError("unknown key", source=source, loc=f"{loc}.{key}")
    server: dict[str, Any] = {"name": name}
    for key in ("command", "args", "env", "cwd", "url", "headers"):
        if key in entry:
            server[key] = entry[key]
    kind = entry.get("type", entry.get("transport"))
    if kind is not None:
        normalized = str(kind).lower()
        if normalized not in _TRANSPORTS:
            raise ConfigError(
                f"unknown transport {kind!r} (stdio, http, streamable-http or sse)",
                source=source,
                loc=f"{loc}.type",
            )
        transport = _TRANSPORTS[normalized]
        if transport is not None and "url" in entry:
            server["transport"] = transport
    if entry.get("disabled") is True:
        server["enabled"] = False
    return server
