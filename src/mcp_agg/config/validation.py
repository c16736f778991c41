"""From a file's text to a `Config`: decoding, profile, `${VAR}`s, validation, and its messages.

Every error names the file, the field path and the problem, because the person reading it
has to find the line to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mcp_agg.config.document import Config
from mcp_agg.config.profiles import apply_profile
from mcp_agg.config.variables import expand
from mcp_agg.errors import ConfigError
from mcp_agg.security.redact import Redactor, secrets_of

__all__ = ["config_from_raw", "decode", "describe_errors"]


def decode(loads: Callable[[str], Any], text: str, kind: str, source: Path) -> Any:
    """`loads(text)` (tomllib's or json's), its syntax errors turned into a ConfigError
    naming the file; a document nested deeper than the parser's recursion is one too."""
    try:
        return loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"invalid {kind}: {exc}", source=source) from exc
    except RecursionError:
        raise ConfigError(f"invalid {kind}: nested too deeply", source=source) from None


def config_from_raw(
    raw: dict[str, Any],
    source: Path | None,
    environ: Mapping[str, str],
    *,
    profile: str | None = None,
) -> Config:
    """A parsed document (`source`'s, if from a file) as a validated `Config`.

    The profile is applied before `${VAR}`s are expanded, so it may use them too.
    """
    raw = apply_profile(raw, profile, source)
    try:
        expanded = expand(raw, "", environ, source)
    except RecursionError:
        raise ConfigError("a value is nested too deeply", source=source) from None
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        # No secret (a header, env value or token) may be echoed by an error message.
        hide = Redactor(secrets_of(expanded))
        raise ConfigError(hide(describe_errors(exc, expanded)), source=source) from None
    config._source = source.resolve() if source is not None else None
    config._profile = profile
    return config


def describe_errors(exc: ValidationError, raw: dict[str, Any]) -> str:
    """One line per problem: `servers[1] (notes).url: must start with http:// or https://`."""
    lines = []
    for error in exc.errors():
        loc = _format_loc(error["loc"], raw)
        kind = error["type"]
        if kind == "extra_forbidden":
            problem = "unknown key"
        elif kind == "missing":
            problem = "required key is missing"
        elif kind == "string_pattern_mismatch" and error["loc"][-1] == "url":
            problem = f"must start with http:// or https:// (got {error['input']!r})"
        else:
            problem = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{loc}: {problem}" if loc else problem)
    return "\n  ".join(lines) if len(lines) == 1 else "\n  " + "\n  ".join(lines)


def _format_loc(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if isinstance(part, int):
            parts[-1] += f"[{part}]"
            if index == 1 and loc[0] in ("servers", "fanout"):
                servers = raw.get(loc[0])
                if isinstance(servers, list) and part < len(servers):
                    entry = servers[part]
                    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                        parts[-1] += f" ({entry['name']})"
        elif isinstance(part, str) and not part.startswith(("function-", "literal[")):
            parts.append(part)
    return ".".join(parts)
