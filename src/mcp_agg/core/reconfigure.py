"""Running a new config in a running gateway: a reload, a server registered at runtime.

Only the servers a change adds, removes or changes are started or stopped; client
sessions, calls in flight and unchanged backends carry on (`mcp_agg.core.reload` says
what a new config changes). A change runs in three steps:

1. the new and changed servers start beside the running ones, and get up to
   `connect_timeout` before they enter the catalog;
2. the switch: the catalog routes to the new config's groups only, and the gateway's
   call settings (limits, roles, pinning, audit log, secrets) become the new ones;
3. servers that left drain their calls in flight (each bounded by its request timeout)
   and stop; a replaced server's resource subscriptions are held by its successor.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
import anyio.abc

from mcp_agg.config import Config, ReplicaSpec, ServerConfig
from mcp_agg.core.build import audit_log_for, link_failovers, pinner_for
from mcp_agg.core.reload import ReloadReport, compose, diff, keep_restart_settings
from mcp_agg.core.sessions import quietly
from mcp_agg.errors import ReloadError
from mcp_agg.security import redact
from mcp_agg.security.access import AccessPolicy
from mcp_agg.security.limits import CallLimits

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.core.announce import Announcer
    from mcp_agg.core.cache import Caching
    from mcp_agg.core.pipeline import CallPipeline
    from mcp_agg.core.sessions import Sessions
    from mcp_agg.observability.audit import AuditLog
    from mcp_agg.resilience.group import ReplicaGroup
    from mcp_agg.security.access import Visibility
    from mcp_agg.security.pinning import Pinner
    from mcp_agg.store.base import Store

__all__ = ["ReconfigureHost", "Reconfigurer"]

#: The gateway's log lines keep the logger they were written to before it was split.
logger = logging.getLogger("mcp_agg.core.gateway")

#: How often a server leaving the config looks whether its calls have drained (seconds).
_DRAIN_POLL = 0.05

_T = TypeVar("_T")


class ReconfigureHost(Protocol):
    """The gateway whose config changes: what a change replaces, and its life cycle."""

    config: Config
    groups: dict[str, ReplicaGroup]
    limits: CallLimits
    pinner: Pinner
    store: Store
    audit: AuditLog | None
    cache: Caching

    @property
    def calls(self) -> CallPipeline: ...

    @property
    def visibility(self) -> Visibility: ...

    @property
    def sessions(self) -> Sessions: ...

    @property
    def announcer(self) -> Announcer: ...

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None: ...

    def build_groups(
        self, config: Config, specs: Iterable[ReplicaSpec]
    ) -> dict[str, ReplicaGroup]: ...

    def launch(self, upstreams: Sequence[Upstream]) -> bool: ...

    async def wait_first_attempts(
        self,
        upstreams: Sequence[Upstream],
        connect_timeout: float,
        stop: anyio.Event | None = None,
    ) -> None: ...

    async def stop_replicas(self, upstreams: Sequence[Upstream]) -> None: ...


class Reconfigurer:
    """Changes the running config: `reconfigure` (a reload), `register`, `unregister`."""

    def __init__(self, host: ReconfigureHost) -> None:
        self._host = host
        #: The config as its file has it, without the servers registered at runtime.
        self._file_config = host.config
        #: Servers registered through the admin API, by name (`register`).
        self.registered: dict[str, tuple[ServerConfig, ...]] = {}
        #: One reconfiguration at a time (a reload, a registration).
        self._lock = anyio.Lock()
        #: The secrets of every config run so far: none of them is ever logged.
        self._secrets = redact.secrets_of(host.config.model_dump())
        redact.install(self._secrets)

    @property
    def config(self) -> Config:
        """The running config."""
        return self._host.config

    def config_names(self) -> set[str]:
        """Every server name in the running config (disabled ones included)."""
        return {server.name for server in self._host.config.servers}

    async def reconfigure(self, new: Config) -> ReloadReport:
        """Run `new` (a config file's contents, plus the servers registered at runtime)
        from now on, without dropping client sessions or calls in flight.

        Servers only in `new` are started and given up to `connect_timeout` before they
        enter the catalog; servers no longer in it leave the catalog at once (new calls
        get "unknown tool"), then their calls in flight drain (each server's request
        timeout bounds that) and their replicas are stopped; a changed server is
        started anew beside the old one, which leaves once the new one is in the
        catalog. Unchanged servers are not touched. Settings that need a restart keep
        their running values (`ReloadReport.restart_needed`, logged).

        Raises `ConfigError` (nothing changed) when `new` with the registrations is
        invalid, or its lock file is; `ReloadError` when the gateway is not running.
        The work goes on if the caller is cancelled: it is the gateway's, not its.
        """
        return await self._detached(lambda: self._apply(new, self.registered))

    async def register(self, server: ServerConfig) -> ReloadReport:
        """Add a server (one `[[servers]]` entry) to the running config, as a reload
        would; it stays across reloads of the file until the file defines its name.

        Raises `ReloadError` when a server of that name runs, `ConfigError` when the
        config with it would be invalid.
        """

        async def work() -> ReloadReport:
            if server.name in self.config_names():
                raise ReloadError(f"a server named {server.name!r} is already configured")
            return await self._apply(self._file_config, {**self.registered, server.name: (server,)})

        return await self._detached(work)

    async def unregister(self, name: str) -> ReloadReport:
        """Remove a server registered at runtime; returns once its calls have drained
        and its replicas are stopped. Raises `ReloadError` for any other name."""

        async def work() -> ReloadReport:
            if name not in self.registered:
                raise ReloadError(f"no server named {name!r} was registered at runtime")
            registered = {n: s for n, s in self.registered.items() if n != name}
            return await self._apply(self._file_config, registered)

        return await self._detached(work)

    async def _detached(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run `work` in the gateway's task group, one at a time, and wait for it.

        A caller that goes away (an HTTP client that hangs up) does not cut a
        reconfiguration in half; the gateway's shutdown does end it.
        """
        tg = self._host.task_group
        if tg is None:
            raise ReloadError("the gateway is not running")
        outcome: list[_T] = []
        failure: list[BaseException] = []
        done = anyio.Event()

        async def run() -> None:
            try:
                async with self._lock:
                    outcome.append(await work())
            except Exception as exc:
                failure.append(exc)
            finally:
                done.set()

        tg.start_soon(run, name="reconfigure")
        await done.wait()
        if failure:
            raise failure[0]
        if not outcome:
            raise ReloadError("the gateway stopped before the change was applied")
        return outcome[0]

    async def _apply(
        self, file: Config, registered: Mapping[str, tuple[ServerConfig, ...]]
    ) -> ReloadReport:
        """Make `file` + `registered` the running config (under the lock)."""
        host = self._host
        composed, shadowed = compose(file, registered)
        report = diff(host.config, composed)
        running = keep_restart_settings(host.config, composed)
        pinner = self._pinner(running)  # a broken lock file: ConfigError, nothing changed yet
        for key in report.restart_needed:
            logger.warning("config reload: %s changed; it takes effect after a restart", key)
        for name in shadowed:
            logger.warning(
                "server %r registered at runtime is dropped: the config file defines it now",
                name,
            )

        # 1. Start the new and changed servers beside the running ones.
        fresh = await self._start(running, {*report.added, *report.changed})

        # 2. Switch: the catalog now routes to the new config's groups only.
        retired = [host.groups[name] for name in (*report.removed, *report.changed)]
        host.groups = {
            name: fresh[name] if name in fresh else host.groups[name]
            for name in dict.fromkeys(spec.group for spec in running.replica_specs())
        }
        link_failovers(host.groups)
        old_audit = self._switch_settings(running, pinner)
        self._file_config = keep_restart_settings(host.config, file)
        host.config = running
        self.registered = {n: s for n, s in registered.items() if n not in shadowed}
        await host.announcer.refresh()

        # 3. Drain and stop what left; a replaced server's subscriptions move over.
        async with anyio.create_task_group() as drains:
            for group in retired:
                drains.start_soon(self._retire, group, name=f"retire {group.name}")
                successor = host.groups.get(group.name)
                if successor is not None and successor.prefix == group.prefix:
                    drains.start_soon(self._carry_subscriptions, group, successor)
        if old_audit is not None:
            old_audit.close()
        return report

    def _pinner(self, running: Config) -> Pinner:
        """The running pinner, or a new one (its lock file read) when `running` pins
        differently."""
        host = self._host
        gateway, old = running.gateway, host.config.gateway
        if (gateway.pin, gateway.lock_file, running.base_dir) == (
            old.pin,
            old.lock_file,
            host.config.base_dir,
        ):
            return host.pinner
        pinner = pinner_for(running)
        pinner.load()
        return pinner

    async def _start(self, running: Config, names: set[str]) -> dict[str, ReplicaGroup]:
        """Start the servers of `running` named `names`, and wait for their first
        attempts (bounded by `connect_timeout`)."""
        host = self._host
        fresh = host.build_groups(running, (s for s in running.replica_specs() if s.group in names))
        starting = [u for group in fresh.values() for u in group.replicas]
        wanted = host.sessions.log_levels.most_verbose()
        for upstream in starting:
            upstream.log_level = wanted
        if not host.launch(starting):
            raise ReloadError("the gateway is stopping")
        if starting:
            await host.wait_first_attempts(starting, running.gateway.connect_timeout)
            if host.task_group is None:
                raise ReloadError("the gateway stopped while the new servers started")
        return fresh

    def _switch_settings(self, new: Config, pinner: Pinner) -> AuditLog | None:
        """The gateway-level call settings of `new`; returns an audit log to close once
        the calls that may still write to it have drained."""
        host = self._host
        old, settings = host.config.gateway, new.gateway
        limits = ("rate_limit", "max_argument_bytes", "max_result_bytes")
        if any(getattr(old, key) != getattr(settings, key) for key in limits):
            host.limits = CallLimits(settings, host.store)
        access = host.visibility.access
        if access is not None and old.roles != settings.roles:
            access.policy = AccessPolicy(settings.roles)
        host.pinner = pinner
        caches_calls = host.cache.caches_calls
        host.cache.configure(new)
        if host.cache.caches_calls != caches_calls:
            host.calls.assemble()
        self._secrets |= redact.secrets_of(new.model_dump())
        redact.install(self._secrets)
        audit_settings = ("audit_log", "audit_arguments")
        if all(getattr(old, key) == getattr(settings, key) for key in audit_settings):
            return None
        retiring, host.audit = host.audit, audit_log_for(new)
        return retiring

    async def _carry_subscriptions(self, old: ReplicaGroup, new: ReplicaGroup) -> None:
        """Resource subscriptions clients hold through a replaced server, held again."""
        for uri in sorted({uri for replica in old.replicas for uri in replica.subscriptions}):
            await quietly(new.subscribe(uri), f"subscribe {uri} on {new.name}")

    async def _retire(self, group: ReplicaGroup) -> None:
        """Wait for a group's calls in flight (bounded by its request timeout), then
        stop its replicas and reap their processes."""
        in_flight = sum(r.stats.in_flight for r in group.replicas)
        if in_flight:
            logger.info("server %r: waiting for %d calls in flight", group.name, in_flight)
        with anyio.move_on_after(group.timeout):
            # Polled, not signalled: a drain is rare, and the call path stays as it is.
            while any(r.stats.in_flight for r in group.replicas):  # noqa: ASYNC110
                await anyio.sleep(_DRAIN_POLL)
        await self._host.stop_replicas(group.replicas)
        logger.info("server %r stopped (%d replicas)", group.name, len(group.replicas))
