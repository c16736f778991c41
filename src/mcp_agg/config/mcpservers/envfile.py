"""VS Code's and Cursor's `envFile`: a dotenv file of more variables for one server.

Its values are often secrets, so they are not copied into an imported servers.toml: each
entry becomes `KEY = "${KEY}"` in the server's `env`, to be set from the same file where
the gateway runs (`set -a; . ./.env; set +a`). Loading the JSON file directly uses the
values themselves, as the client would.
"""

from __future__ import annotations

from pathlib import Path

from dotenv import dotenv_values

__all__ = ["read_env_file"]


def read_env_file(path: Path) -> dict[str, str] | None:
    """The entries of the dotenv file at `path`, taken literally (as VS Code does, no
    `${VAR}` inside them is expanded); None if there is no such file to read."""
    if not path.is_file():
        return None
    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return {key: value for key, value in values.items() if value is not None}
