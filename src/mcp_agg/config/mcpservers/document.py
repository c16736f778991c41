"""A client's MCP config file as the servers.toml document.

The files people have: Claude Desktop's (`mcpServers` among the app's own settings),
Cursor's and Claude Code's (`mcpServers`, with `type`, `url` and `headers`), VS Code's
(`servers` and `inputs`, JSON with comments and trailing commas). `mcp-agg import` and
loading a `.json` config both go through `translate`, so a file means the same thing to
both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import json5

from mcp_agg.config.mcpservers.entry import server_entry
from mcp_agg.config.mcpservers.needs import Needs, Variable
from mcp_agg.config.mcpservers.rewrite import Folders, Input, Rewriter
from mcp_agg.config.validation import decode
from mcp_agg.errors import ConfigError

__all__ = ["Translation", "translate"]

#: The names a file references itself: `${NAME}`, `${NAME:-default}`, `${env:NAME}`.
_REFERENCED = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


@dataclass(frozen=True)
class Translation:
    """The servers.toml document of a client's file, and what it needs to run."""

    raw: dict[str, Any]
    #: every variable the document references without a default, in order of first use
    variables: tuple[Variable, ...]
    #: what was left out, for the person importing
    notes: tuple[str, ...]

    def environ(self, environ: Mapping[str, str]) -> dict[str, str]:
        """`environ` with the values the file itself gives (its secrets, its envFiles'
        entries) on top: what the JSON file loaded directly is expanded with."""
        given = {v.name: v.value for v in self.variables if v.value is not None}
        return {**environ, **given}


def translate(text: str, source: Path) -> Translation:
    """The translation of the JSON file `source`, whose content is `text`."""
    # JSON5 is a superset of VS Code's JSON with comments and trailing commas.
    data = decode(json5.loads, text, "JSON", source)
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object", source=source)
    key = _servers_key(data, source)
    servers: dict[str, Any] = data[key]
    known = {key, "inputs"} if key == "servers" else {key}
    ignored = sorted(set(data) - known)
    notes = [f"ignored top-level keys: {', '.join(ignored)}"] if ignored else []
    inputs = _inputs(data.get("inputs"), source) if key == "servers" else {}
    needs = Needs(_referenced(servers))
    rewrite = Rewriter(needs, inputs, Folders.of(source), source)
    entries = [
        server_entry(name, entry, f"{key}.{name}", rewrite, notes)
        for name, entry in servers.items()
    ]
    return Translation({"servers": entries}, needs.variables, tuple(notes))


def _servers_key(data: dict[str, Any], source: Path) -> str:
    present = [key for key in ("mcpServers", "servers") if isinstance(data.get(key), dict)]
    if len(present) == 2:
        raise ConfigError(
            'both "mcpServers" and "servers" objects: expected one, "mcpServers"'
            ' (Claude Desktop, Cursor, Claude Code) or "servers" (VS Code)',
            source=source,
        )
    if not present:
        raise ConfigError(
            'expected an object with an "mcpServers" object (or "servers", as in VS Code)',
            source=source,
        )
    return present[0]


def _inputs(value: Any, source: Path) -> dict[str, Input]:
    """VS Code's `inputs`, by id."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise ConfigError("expected a list", source=source, loc="inputs")
    found: dict[str, Input] = {}
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ConfigError(
                "expected an object with an id", source=source, loc=f"inputs[{index}]"
            )
        default = item.get("default")
        found[item["id"]] = Input(
            id=item["id"],
            description=str(item.get("description", "")),
            password=item.get("password") is True,
            default=default if isinstance(default, str) else None,
        )
    return found


def _referenced(servers: dict[str, Any]) -> set[str]:
    return {name for text in _strings(servers) for name in _REFERENCED.findall(text)}


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value (iteratively: it may be nested deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
