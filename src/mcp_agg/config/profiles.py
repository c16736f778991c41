"""`[profiles.NAME]`: overrides of `[gateway]` and of servers, chosen when loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp_agg.errors import ConfigError

__all__ = ["apply_profile"]


def apply_profile(raw: dict[str, Any], profile: str | None, source: Path | None) -> dict[str, Any]:
    """The document with `[profiles.NAME]` merged in, and the `profiles` table removed.

    A profile's `gateway` table is merged into `[gateway]` (tables key by key, other
    values replaced); its `servers.SERVER` tables into every `[[servers]]` entry named
    SERVER (all its replicas). Every profile is checked, chosen or not, so a typo in
    one is found before the day it is used; `${VAR}`s are expanded after merging, so a
    profile not chosen may name variables that are not set.
    """
    profiles = raw.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(
            "must be a table of [profiles.NAME] tables", source=source, loc="profiles"
        )
    servers = raw.get("servers", [])
    names = (
        {s["name"] for s in servers if isinstance(s, dict) and isinstance(s.get("name"), str)}
        if isinstance(servers, list)
        else set()
    )
    for name, table in profiles.items():
        _check_profile(f"profiles.{name}", table, names, source)
    out = {k: v for k, v in raw.items() if k != "profiles"}
    if profile is None:
        return out
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none is defined"
        raise ConfigError(f"profile {profile!r} is not defined ({known})", source=source)
    chosen = profiles[profile]
    if "gateway" in chosen:
        gateway = raw.get("gateway", {})
        out["gateway"] = _merged(gateway if isinstance(gateway, dict) else {}, chosen["gateway"])
    overrides = chosen.get("servers", {})
    if overrides and isinstance(servers, list):
        out["servers"] = [
            _merged(s, overrides[s["name"]])
            if isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] in overrides
            else s
            for s in servers
        ]
    return out


def _check_profile(loc: str, table: Any, names: set[str], source: Path | None) -> None:
    """A profile overrides `gateway` and existing servers' fields, and renames nothing."""
    if not isinstance(table, dict):
        raise ConfigError("must be a table", source=source, loc=loc)
    for key, value in table.items():
        if key not in ("gateway", "servers"):
            raise ConfigError(
                "unknown key (a profile overrides `gateway` and `servers`)",
                source=source,
                loc=f"{loc}.{key}",
            )
        if not isinstance(value, dict):
            raise ConfigError("must be a table", source=source, loc=f"{loc}.{key}")
    for server, fields in table.get("servers", {}).items():
        where = f"{loc}.servers.{server}"
        if server not in names:
            raise ConfigError("names no [[servers]] entry", source=source, loc=where)
        if not isinstance(fields, dict):
            raise ConfigError("must be a table of the server's fields", source=source, loc=where)
        if "name" in fields:
            raise ConfigError(
                "a profile cannot rename a server", source=source, loc=f"{where}.name"
            )


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override`'s keys: tables merged key by key, other values replaced."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _merged(current, value)
        else:
            out[key] = value
    return out
