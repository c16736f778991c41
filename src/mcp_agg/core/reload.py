"""Hot reload: what a new config changes, and reading it again from its file.

A reload never restarts the gateway. `diff` compares the running config with the new
one server by server (a server is a `name`: a group of replicas) and says which are
added, removed, changed or unchanged; `Reconfigurer.reconfigure` then starts, replaces and
stops only those (`mcp_agg.core.reconfigure`), so the sessions of clients and of
unchanged backends live on.

A server is changed when anything that shapes its replicas differs: any field of its
`[[servers]]` entries, how many replicas there are, and the gateway defaults it
inherits (retry, breaker, request timeout, balancer, health checks, connect timeout).
A few gateway settings are fixed when the front starts (who may connect, the admin
API, tracing, the server's name): a new value for one of them is reported as needing
a restart and the running value is kept.

`reload_from_file` is what SIGHUP and `serve --watch` call; `watch_config` notices
changes to the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from mcp_agg.config import Config, ServerConfig, load_config
from mcp_agg.errors import ConfigError, GatewayError

if TYPE_CHECKING:
    from mcp_agg.core.views import Reconfigurable

__all__ = [
    "RESTART_SETTINGS",
    "ReloadReport",
    "compose",
    "diff",
    "group_settings",
    "keep_restart_settings",
    "reload_from_file",
    "watch_config",
]

logger = logging.getLogger(__name__)

#: `[gateway]` settings fixed while the gateway runs: the HTTP front's authentication
#: and Host/Origin rules, the admin API and the operations routes (composed when the
#: front starts), the fronts' message limit and drain (read when they start), tracing
#: (installed once per process), the server's name (sent to clients in `initialize`)
#: and the shared store (opened once: the rate limits and registrations live in it).
RESTART_SETTINGS = (
    "name",
    "auth",
    "allowed_hosts",
    "allowed_origins",
    "admin",
    "tracing",
    "metrics",
    "max_message_bytes",
    "shutdown_grace",
    "drain_seconds",
    "store",
)

#: How often `watch_config` looks at the file (seconds), and how long a change must
#: stay still before it is read (an editor may write it in several steps).
_POLL_INTERVAL = 1.0
_SETTLE = 0.25


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What a new config changes, by server name (in config order) and setting."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    #: `gateway.KEY` settings whose new value needs a restart; the running one is kept.
    restart_needed: tuple[str, ...] = ()

    @property
    def servers_changed(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        parts.append(f"{len(self.unchanged)} unchanged")
        return "; ".join(parts)


def group_settings(config: Config) -> dict[str, tuple[object, ...]]:
    """Everything that shapes each server's replicas, by server name, in config order.

    Two configs run a server the same way exactly when these are equal: its replicas
    (ids, entries and folder) and the settings each inherits from `[gateway]`.
    """
    gateway = config.gateway
    inherited = (
        gateway.connect_timeout,
        gateway.health_interval,
        gateway.unhealthy_threshold,
        gateway.healthy_threshold,
    )
    out: dict[str, list[object]] = {}
    for spec in config.replica_specs():
        server = spec.server
        out.setdefault(spec.group, [inherited]).append(
            (
                spec.id,
                server,
                spec.base_dir,
                config.retry_for(server),
                config.breaker_for(server),
                config.timeout_for(server),
                server.balancer or gateway.balancer,
            )
        )
    return {name: tuple(settings) for name, settings in out.items()}


def diff(old: Config, new: Config) -> ReloadReport:
    """What running `new` instead of `old` changes."""
    before, after = group_settings(old), group_settings(new)
    return ReloadReport(
        added=tuple(name for name in after if name not in before),
        removed=tuple(name for name in before if name not in after),
        changed=tuple(name for name in after if name in before and after[name] != before[name]),
        unchanged=tuple(name for name in after if name in before and after[name] == before[name]),
        restart_needed=tuple(
            f"gateway.{key}"
            for key in RESTART_SETTINGS
            if getattr(old.gateway, key) != getattr(new.gateway, key)
        ),
    )


def keep_restart_settings(running: Config, new: Config) -> Config:
    """`new` with the settings that need a restart as they are in `running`."""
    kept = {key: getattr(running.gateway, key) for key in RESTART_SETTINGS}
    if all(getattr(new.gateway, key) == value for key, value in kept.items()):
        return new
    return new.model_copy(update={"gateway": new.gateway.model_copy(update=kept)})


def compose(
    file: Config, registered: Mapping[str, Sequence[ServerConfig]]
) -> tuple[Config, tuple[str, ...]]:
    """The running config: the file's, plus the servers registered at runtime.

    A registration whose name the file defines gives way to the file; those names are
    returned second. The whole result is validated again (a registration may name a
    missing failover, or repeat a replica id); an invalid one raises `ConfigError`.
    """
    defined = {server.name for server in file.servers}
    shadowed = tuple(name for name in registered if name in defined)
    extra = [s for name, entries in registered.items() if name not in defined for s in entries]
    if not extra:
        return file, shadowed
    servers = [*file.servers, *extra]
    try:
        # Model instances are taken as they are: only the whole-config rules run again.
        Config.model_validate({"gateway": file.gateway, "servers": servers, "fanout": file.fanout})
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(problems, source=file.source) from None
    return file.model_copy(update={"servers": servers}), shadowed


# ---------------------------------------------------------------------------- the file


async def reload_from_file(gateway: Reconfigurable) -> str | None:
    """Read the gateway's config file again (same profile) and run it.

    Never raises: an invalid file is logged at ERROR (the message names the field)
    and the running config is kept. Returns the problem (None: reloaded), for the web
    console to show.
    """
    source = gateway.config.source
    if source is None:
        return _failed("config reload: the running config was not read from a file")
    try:
        new = load_config(source, profile=gateway.config.profile)
        report = await gateway.reconfigure(new)
    except ConfigError as exc:
        return _failed(f"config reload failed, keeping the running config: {exc}")
    except GatewayError as exc:
        return _failed(f"config reload failed: {exc}")
    except Exception:
        logger.exception("config reload failed")
        return "config reload failed (see the log)"
    logger.info("config reloaded from %s: %s", source, report.summary())
    return None


def _failed(message: str) -> str:
    logger.error("%s", message)
    return message


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one version of the file from another; None while it does not exist
    (an editor that saves by replacing the file removes it for a moment)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


async def watch_config(path: Path, on_change: Callable[[], Awaitable[object]]) -> None:
    """Call `on_change` whenever the file at `path` changes, until cancelled.

    The path is looked at once a second, so a file replaced by an editor (written
    aside, then renamed over it) is seen like one written in place. A change is acted
    on once the file has stayed the same for a moment.
    """
    logger.info("watching %s for changes", path)
    seen = _stamp(path)
    while True:
        await anyio.sleep(_POLL_INTERVAL)
        current = _stamp(path)
        if current is None or current == seen:
            continue
        while True:  # debounce: wait until it stops changing
            await anyio.sleep(_SETTLE)
            settled = _stamp(path)
            if settled == current:
                break
            current = settled
        if current is None:
            continue
        seen = current
        logger.info("%s changed, reloading", path)
        await on_change()
