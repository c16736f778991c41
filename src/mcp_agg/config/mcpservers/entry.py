"""One server of a client's config as a `[[servers]]` entry."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_agg.config.mcpservers.envfile import read_env_file
from mcp_agg.config.mcpservers.needs import Variable, env_name, is_name
from mcp_agg.config.mcpservers.rewrite import Rewriter
from mcp_agg.config.mcpservers.secrets import Span, in_arg, in_url, in_value, looks_secret
from mcp_agg.errors import ConfigError

__all__ = ["server_entry"]

_TRANSPORTS = {
    "stdio": None,
    "http": "http",
    "streamable-http": "http",
    "streamablehttp": "http",
    "streamable_http": "http",
    "sse": "sse",
}
#: Keys about how VS Code itself runs or shows a server, which the gateway has no
#: equivalent of: left out, with a note.
_CLIENT_ONLY = {
    "dev": "VS Code's development mode (watch and debug)",
    "gallery": "VS Code's gallery entry",
    "version": "VS Code's version of the entry",
    "sandboxEnabled": "VS Code's sandbox: the server runs without it",
    "sandbox": "VS Code's sandbox rules: the server runs without them",
}
_KEYS = {
    "command",
    "args",
    "env",
    "envFile",
    "cwd",
    "url",
    "headers",
    "type",
    "transport",
    "disabled",
    *_CLIENT_ONLY,
}


def server_entry(
    name: str, entry: Any, loc: str, rewrite: Rewriter, notes: list[str]
) -> dict[str, Any]:
    """The `[[servers]]` entry of the client's entry `name` (at `loc`, e.g. `mcpServers.x`).

    Values of the wrong type are passed on as they are, for validation to name them.
    """
    if not isinstance(entry, dict):
        raise ConfigError("expected an object", source=rewrite.source, loc=loc)
    for key in entry:
        if key not in _KEYS:
            raise ConfigError("unknown key", source=rewrite.source, loc=f"{loc}.{key}")
        if key in _CLIENT_ONLY:
            notes.append(f"{loc}.{key}: ignored, {_CLIENT_ONLY[key]}")
    return _Entry(name, loc, rewrite, notes).translate(entry)


class _Entry:
    """The translation of one entry: its strings rewritten in the context of its server."""

    def __init__(self, name: str, loc: str, rewrite: Rewriter, notes: list[str]) -> None:
        self.name = name
        self.loc = loc
        self.rewrite = rewrite
        self.notes = notes

    def translate(self, entry: dict[str, Any]) -> dict[str, Any]:
        loc = self.loc
        server: dict[str, Any] = {"name": self.name}
        if "command" in entry:
            server["command"] = self.text(entry["command"], f"{loc}.command")
        if "args" in entry:
            server["args"] = self.args(entry["args"])
        if "env" in entry or "envFile" in entry:
            env = self.table(entry.get("env", {}), "env")
            if "envFile" in entry:
                env = self.with_env_file(env, entry["envFile"])
            if "env" in entry or env:
                server["env"] = env
        if "cwd" in entry:
            server["cwd"] = self.text(entry["cwd"], f"{loc}.cwd")
        if "url" in entry:
            url = entry["url"]
            secrets = in_url(url) if isinstance(url, str) else []
            server["url"] = self.text(url, f"{loc}.url", secrets)
        if "headers" in entry:
            server["headers"] = self.table(entry["headers"], "headers")
        transport = _transport(entry, loc, self.rewrite.source)
        if transport is not None and "url" in entry:
            server["transport"] = transport
        if entry.get("disabled") is True:
            server["enabled"] = False
        return server

    def text(self, value: Any, loc: str, secrets: Sequence[Span] = ()) -> Any:
        return self.rewrite(value, loc, self.name, secrets) if isinstance(value, str) else value

    def args(self, args: Any) -> Any:
        if not isinstance(args, list):
            return args
        rewritten = []
        previous: str | None = None
        for index, arg in enumerate(args):
            secrets = in_arg(previous, arg) if isinstance(arg, str) else []
            rewritten.append(self.text(arg, f"{self.loc}.args[{index}]", secrets))
            previous = arg if isinstance(arg, str) else None
        return rewritten

    def table(self, table: Any, key: str) -> Any:
        """`env` or `headers`: each value rewritten, its credential moved out."""
        if not isinstance(table, dict):
            return table
        loc = f"{self.loc}.{key}"
        return {
            k: self.text(v, f"{loc}.{k}", in_value(k, v) if isinstance(v, str) else [])
            for k, v in table.items()
        }

    def with_env_file(self, env: Any, value: Any) -> Any:
        """`env` with a `${KEY}` reference for each entry of the envFile that it lacks."""
        loc, needs = f"{self.loc}.envFile", self.rewrite.needs
        path = self.rewrite.folders.path(value) if isinstance(value, str) else None
        if path is None:
            raise ConfigError(
                "expected the path of a dotenv file (${workspaceFolder} and ${userHome}"
                " may be used)",
                source=self.rewrite.source,
                loc=loc,
            )
        entries = read_env_file(path)
        if entries is None:
            self.notes.append(f"{loc}: no file {path}; its variables are not imported")
            return env
        if not isinstance(env, dict):
            return env
        merged = dict(env)
        for key, entry_value in entries.items():
            if key in merged:
                continue  # the server's own env wins, as in VS Code
            own = key if is_name(key) else env_name(key)
            name = needs.name(("envFile", path, key), (own, env_name(self.name, key)))
            why = f"{key} in {path} (the envFile of {self.loc})"
            needs.add(Variable(name, why, secret=looks_secret(key), value=entry_value))
            merged[key] = "${" + name + "}"
        return merged


def _transport(entry: dict[str, Any], loc: str, source: Path) -> str | None:
    kind = entry.get("type", entry.get("transport"))
    if kind is None:
        return None
    normalized = str(kind).lower()
    if normalized not in _TRANSPORTS:
        raise ConfigError(
            f"unknown transport {kind!r} (stdio, http, streamable-http or sse)",
            source=source,
            loc=f"{loc}.type",
        )
    return _TRANSPORTS[normalized]
