"""`${VAR}` expansion in the values of a config document."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp_agg.errors import ConfigError

__all__ = ["expand"]

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def expand(value: Any, loc: str, environ: Mapping[str, str], source: Path | None) -> Any:
    """Expand `${VAR}` and `${VAR:-default}` in every string; `$$` is a literal `$`.

    `loc` is the value's field path, named by the error when a variable is not set.
    """
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = environ.get(name)
            if value is not None and (value or default is None):
                return value
            if default is not None:
                return default  # as in a POSIX shell: unset or empty
            raise ConfigError(
                f"environment variable ${{{name}}} is not set", source=source, loc=loc
            )

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: expand(v, f"{loc}.{k}" if loc else k, environ, source) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{loc}[{i}]", environ, source) for i, v in enumerate(value)]
    return value
