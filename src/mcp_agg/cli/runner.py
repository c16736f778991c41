"""Loading the config and running the gateway for a command, failures as exit codes.

A config error, or a catalog conflict found while starting, exits with 2 and one line
on stderr; anything else propagates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio

from mcp_agg.cli.logs import quiet_relayed_deprecations, setup_logging
from mcp_agg.cli.output import fail
from mcp_agg.config import Config, find_config, load_config
from mcp_agg.errors import CatalogError, ConfigError

if TYPE_CHECKING:
    # Imported where a gateway is built: `serve` starts its stdio backends between
    # loading the config and importing it (backend/early.py).
    from mcp_agg.core.gateway import Gateway

__all__ = ["load", "run", "snapshot", "snapshot_of"]

_T = TypeVar("_T")


def load(config_path: Path | None, profile: str | None = None) -> Config:
    try:
        return load_config(find_config(config_path), profile=profile)
    except ConfigError as exc:
        raise fail(2, f"config error: {exc}") from None


def run(fn: Callable[[], Awaitable[_T]]) -> _T:
    try:
        return anyio.run(fn)
    except CatalogError as exc:
        raise fail(2, str(exc)) from None
    except ConfigError as exc:  # the lock file, read at startup
        raise fail(2, f"config error: {exc}") from None
    except BaseExceptionGroup as group:
        for leaf in _leaves(group):
            if isinstance(leaf, CatalogError):
                raise fail(2, str(leaf)) from None
            if isinstance(leaf, ConfigError):
                raise fail(2, f"config error: {leaf}") from None
        raise


def snapshot(
    config: Path | None, profile: str | None, log_level: str | None, read: Callable[[Gateway], _T]
) -> tuple[Gateway, _T]:
    """Start the gateway once, read something off it, and stop it."""
    return snapshot_of(load(config, profile), log_level, read)


def snapshot_of(
    loaded: Config, log_level: str | None, read: Callable[[Gateway], _T]
) -> tuple[Gateway, _T]:
    from mcp_agg.core.gateway import Gateway

    setup_logging(log_level, "warning")
    quiet_relayed_deprecations()
    gateway = Gateway(loaded)

    async def started() -> _T:
        async with gateway.running():
            return read(gateway)

    return gateway, run(started)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
