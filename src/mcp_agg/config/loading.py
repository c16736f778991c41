"""Finding and reading the config file: servers.toml, or an mcpServers JSON file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

import tomli_w

from mcp_agg.config.document import Config
from mcp_agg.config.mcpservers import parse_mcp_servers
from mcp_agg.config.validation import config_from_raw, decode
from mcp_agg.errors import ConfigError

__all__ = ["find_config", "load_config", "mcp_servers_to_toml"]

CONFIG_ENV = "MCP_AGG_CONFIG"
PROFILE_ENV = "MCP_AGG_PROFILE"
DEFAULT_CONFIG = "servers.toml"


def find_config(explicit: Path | None = None) -> Path:
    """`--config`, then `$MCP_AGG_CONFIG`, then `./servers.toml`."""
    if explicit is not None:
        candidate, origin = explicit, "--config"
    elif os.environ.get(CONFIG_ENV):
        candidate, origin = Path(os.environ[CONFIG_ENV]), CONFIG_ENV
    else:
        candidate, origin = Path(DEFAULT_CONFIG), "the current folder"
    if not candidate.is_file():
        raise ConfigError(f"no config file (from {origin})", source=candidate)
    return candidate.resolve()


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, profile: str | None = None
) -> Config:
    """Read, expand and validate a servers.toml or mcpServers JSON file.

    `profile` (else `$MCP_AGG_PROFILE`) names the `[profiles.NAME]` table applied.
    """
    environ = os.environ if environ is None else environ
    profile = profile or environ.get(PROFILE_ENV) or None
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        raw = parse_mcp_servers(text, path)
    else:
        raw = decode(tomllib.loads, text, "TOML", path)
    return config_from_raw(raw, path, environ, profile=profile)


def mcp_servers_to_toml(path: Path) -> str:
    """The servers.toml equivalent of an mcpServers JSON file, validated first."""
    raw = parse_mcp_servers(_read_text(path), path)
    # Validate without expanding ${VAR}: the output keeps them as written. A url that is
    # only a variable cannot be checked until it is expanded, so it stands in as valid.
    checkable = {
        "servers": [
            {**s, "url": "http://variable.invalid"}
            if isinstance(s.get("url"), str) and s["url"].startswith("${")
            else s
            for s in raw["servers"]
        ]
    }
    config_from_raw(checkable, path, _KeepVariables())
    return tomli_w.dumps({"gateway": {"name": "mcp-agg"}, **raw})


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", source=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=path) from None


class _KeepVariables(Mapping[str, str]):
    """An environment in which every variable is set to its own `${NAME}` reference."""

    def __getitem__(self, key: str) -> str:
        return "${" + key + "}"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
