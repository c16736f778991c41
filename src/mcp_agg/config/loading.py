"""Finding and reading the config file: servers.toml, or an mcpServers JSON file."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_agg.config.document import Config
from mcp_agg.config.validation import config_from_raw, decode
from mcp_agg.errors import ConfigError

if TYPE_CHECKING:
    from mcp_agg.config.mcpservers import Variable

__all__ = ["Imported", "find_config", "import_mcp_servers", "load_config"]

logger = logging.getLogger(__name__)

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
    if path.suffix.lower() != ".json":
        raw = decode(tomllib.loads, text, "TOML", path)
        return config_from_raw(raw, path, environ, profile=profile)
    # Imported here: a servers.toml, which `serve` and `check` read first thing, needs
    # neither the JSON translation nor json5 (docs/benchmarks.md, "Startup and import time").
    from mcp_agg.config.mcpservers import translate

    # The same translation as `import`; the values it moved out of the document (secrets,
    # envFile entries) are still the file's, so they expand its references.
    translation = translate(text, path)
    for note in translation.notes:
        logger.info("%s: %s", path, note)
    return config_from_raw(translation.raw, path, translation.environ(environ), profile=profile)


@dataclass(frozen=True)
class Imported:
    """What `mcp-agg import` prints: the servers.toml text on stdout, the rest on stderr."""

    toml: str
    #: the variables `toml` references without a default, to be set where the gateway runs
    variables: tuple[Variable, ...]
    #: what was left out of it
    notes: tuple[str, ...]


def import_mcp_servers(path: Path) -> Imported:
    """The servers.toml equivalent of an MCP client's JSON config, validated first.

    Credentials the file holds in clear, and VS Code's inputs and envFile entries, become
    `${NAME}` references: the text has no secret, and `variables` says what to set.
    """
    import tomli_w

    from mcp_agg.config.mcpservers import translate

    translation = translate(_read_text(path), path)
    raw = translation.raw
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
    toml = tomli_w.dumps({"gateway": {"name": "mcp-agg"}, **raw})
    return Imported(toml, translation.variables, translation.notes)


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
