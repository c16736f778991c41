"""Gateway: the replicas, their groups, the merged catalog, and the FastMCP server over them.

`Gateway.running()` is the one life cycle used by every command: it starts every replica
at once, waits until each has connected or failed (each bounded by `connect_timeout`),
builds the catalog, and keeps it current while backends come and go. Leaving it stops
every replica and reaps every backend process.

`Gateway.reconfigure` runs a new config in a running gateway (a reload, a server
registered through the admin API): only the servers it adds, removes or changes are
started or stopped, and client sessions and calls in flight carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import mcp_types
from fastmcp import FastMCP
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)

from mcp_agg.backend.reaper import Reaper
from mcp_agg.backend.upstream import Upstream
from mcp_agg.components.fanout import fanout_tools
from mcp_agg.components.forwarding import CallTarget, hop_wire, tool_calls
from mcp_agg.components.gateway_tools import gateway_tools
from mcp_agg.components.search import SearchMode
from mcp_agg.config import BreakerConfig, Config, ReplicaSpec, ServerConfig
from mcp_agg.console.startup import LogStartup, ReplicaOutcome, StartupObserver, StartupSummary
from mcp_agg.core.caller import Caller, LogLevels, connection_of, current_caller
from mcp_agg.core.catalog import Catalog, LocalTools, build_catalog, with_local_tools
from mcp_agg.core.naming import exposed_uri
from mcp_agg.core.reload import ReloadReport, compose, diff, keep_restart_settings
from mcp_agg.errors import ReloadError
from mcp_agg.front.ops import ops_routes
from mcp_agg.front.provider import GatewayProvider
from mcp_agg.observability import audit, tracing
from mcp_agg.resilience.balancer import make_balancer
from mcp_agg.resilience.breaker import CircuitBreaker
from mcp_agg.resilience.group import ReplicaGroup
from mcp_agg.resilience.health import HealthPolicy
from mcp_agg.security import redact
from mcp_agg.security.access import AccessPolicy
from mcp_agg.security.auth import CallerAccess, build_verifier
from mcp_agg.security.limits import CallLimits
from mcp_agg.security.pinning import Pinner

if TYPE_CHECKING:
    from mcp_agg.observability.metrics import GatewayMetrics

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

#: Coalesce bursts of backend changes (a restart changes state several times).
_REBUILD_DEBOUNCE = 0.05
#: How long replicas get to close their sessions and reap their processes on shutdown.
_STOP_GRACE = 10.0
#: Eras whose connections accept unsolicited list_changed notifications.
_MODERN_ERA = "2026-"
#: Beyond connect_timeout, how long startup waits for first attempts (their teardown).
_FIRST_ATTEMPT_MARGIN = 5.0
#: How often a server leaving the config looks whether its calls have drained (seconds).
_DRAIN_POLL = 0.05

_T = TypeVar("_T")


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        #: The config as its file has it, without the servers registered at runtime.
        self._file_config = config
        #: Servers registered through the admin API, by name (`register`).
        self.registered: dict[str, tuple[ServerConfig, ...]] = {}
        #: Spans of calls and attempts while running with `[gateway.tracing]`; None
        #: (no cost per call) without it.
        self.tracer: tracing.Tracer | None = None
        self.groups = self._build_groups(config, config.replica_specs())
        self._link_failovers()
        self.catalog = Catalog()
        #: Where the gateway's own tools come from (fan-out, gateway tools), applied to
        #: every catalog built.
        self.local_tools: list[LocalTools] = []
        self.local_tools.append(fanout_tools(self))
        #: Search mode: the search and call tools instead of a long tool list.
        self.search = SearchMode(self, lambda: self.config.gateway)
        #: Told how each replica's first attempt ends, and the startup's summary.
        self.startup: StartupObserver = LogStartup()
        self.reaper = Reaper()
        self._changed = anyio.Event()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        #: Log levels clients asked for; backends send at the most verbose of them.
        self.log_levels = LogLevels()
        #: Modern-era clients hear of changes on `subscriptions/listen` streams fed by this.
        self.bus = InMemorySubscriptionBus()
        #: Who is subscribed to each exposed resource URI: handshake-era connections
        #: (told directly) and modern-era listen streams (told through the bus).
        self._subscribers: dict[str, weakref.WeakSet[object]] = {}
        #: Per-role access on an authenticated HTTP front (`build_server(http=True)`
        #: with `[gateway.auth]`); None: every caller sees everything, at no cost.
        self.access: CallerAccess | None = None
        #: Rate limits and size limits of `tools/call` (`security/limits.py`).
        self.limits = CallLimits(config.gateway)
        #: Tool pinning against the lock file, applied to every catalog built.
        self.pinner = _pinner(config)
        #: One JSON line per tools/call; None (no cost per call) without `audit_log`.
        self.audit = _audit_log(config)
        #: Prometheus metrics (`[gateway] metrics`), a registry of this gateway's own, and
        #: what every call's record is told to; None (no cost per call) until they can be
        #: read (`collect_metrics`).
        self.metrics: GatewayMetrics | None = None
        self.observe_call: audit.CallObserver | None = None
        self.local_tools.append(gateway_tools(self))  # while `expose_gateway_tools` is on
        self._secrets = redact.secrets_of(config.model_dump())
        redact.install(self._secrets)
        #: Every replica started and not yet stopped: those serving, those of a new
        #: config still connecting, and those of an old one still draining.
        self._live: set[Upstream] = set()
        #: The running replicas' task group, while the gateway runs (reconfigure
        #: starts replicas in it); None before startup and once stopping.
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = anyio.Event()
        #: One reconfiguration at a time (a reload, a registration).
        self._reload_lock = anyio.Lock()

    @property
    def upstreams(self) -> list[Upstream]:
        """Every replica of every server in the running config, in config order."""
        return [upstream for group in self.groups.values() for upstream in group.replicas]

    def _build_groups(
        self, config: Config, specs: Iterable[ReplicaSpec]
    ) -> dict[str, ReplicaGroup]:
        """The replicas of these specs, in their groups, as `config` sets them up
        (not started). Used at startup and by `reconfigure` alike."""
        gateway = config.gateway
        health = HealthPolicy(
            interval=gateway.health_interval,
            unhealthy_threshold=gateway.unhealthy_threshold,
            healthy_threshold=gateway.healthy_threshold,
        )
        members: dict[str, list[Upstream]] = {}
        for spec in specs:
            upstream = Upstream(
                spec,
                connect_timeout=gateway.connect_timeout,
                on_change=self._on_upstream_change,
                on_resource_updated=self._on_resource_updated,
                breaker=_breaker(config.breaker_for(spec.server)),
                health=health,
            )
            members.setdefault(upstream.group, []).append(upstream)
        groups = {
            name: ReplicaGroup(
                name,
                replicas,
                prefix=replicas[0].spec.prefix,
                timeout=config.timeout_for(replicas[0].spec.server),
                retry=config.retry_for(replicas[0].spec.server),
                balancer=make_balancer(replicas[0].spec.server.balancer or gateway.balancer),
            )
            for name, replicas in members.items()
        }
        self._trace(groups.values())  # servers a reload adds are traced as the others
        return groups

    def _link_failovers(self) -> None:
        """Point every group at its standbys (`failover_for`), in priority order."""
        standbys = sorted(
            (g for g in self.groups.values() if g.server.failover_for is not None),
            key=lambda g: g.server.priority,
        )
        failovers: dict[str, list[ReplicaGroup]] = {name: [] for name in self.groups}
        for standby in standbys:
            primary = standby.server.failover_for or ""
            if primary in failovers:
                failovers[primary].append(standby)
        for name, group in self.groups.items():
            group.failovers = failovers[name]  # a call in flight keeps the list it took

    # ------------------------------------------------------------------ life cycle

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Start every replica, build the catalog, and stop and reap everything on exit.

        The replicas' task group lives in a task of its own: FastMCP enters a provider's
        lifespan in one cancel scope and leaves it in another, which a task group held
        across the `yield` would not survive.
        """
        self.pinner.load()  # a broken lock file stops startup (ConfigError)
        self._start_tracing()  # so does tracing without the otel extra
        started = anyio.Event()
        stop = self._stopping = anyio.Event()
        supervisor = asyncio.create_task(self._supervise(started, stop), name="mcp-agg gateway")
        try:
            await _first_of(started.wait(), supervisor)
            if supervisor.done():
                supervisor.result()  # raises the startup failure (e.g. a name collision)
            yield self
        finally:
            stop.set()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({supervisor})
            if not supervisor.cancelled() and supervisor.exception() is not None:
                logger.error("gateway shutdown failed", exc_info=supervisor.exception())

    async def _supervise(self, started: anyio.Event, stop: anyio.Event) -> None:
        self.reaper.start()
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                self._start(tg, upstream)
            try:
                await self._wait_first_attempts(
                    self.upstreams, stop, self.config.gateway.connect_timeout
                )
                if stop.is_set():
                    return  # stopped while starting: straight to reaping
                self.catalog = self._build_catalog(strict=True)
                self._log_summary()
                tg.start_soon(self._rebuild_on_change, name="catalog")
                self._tg = tg
                started.set()
                await stop.wait()
            finally:
                self._tg = None
                await self._stop(tg)

    def collect_metrics(self) -> GatewayMetrics | None:
        """Start keeping metrics, once, where someone can read them (`/metrics` on the
        HTTP front, `serve --metrics-port`, the `gateway_metrics` tool); None with
        `[gateway] metrics = false`."""
        if self.metrics is None and self.config.gateway.metrics:
            from mcp_agg.observability.metrics import GatewayMetrics  # prometheus-client

            self.metrics = GatewayMetrics(self)
            self.observe_call = self.metrics.observe
        return self.metrics

    def hurry(self) -> bool:
        """A stop request while the gateway is already stopping (a client that gave up
        waiting sends SIGTERM after closing stdin): every backend is sent SIGTERM now
        instead of being given its grace to exit, so the gateway can end before the
        client escalates to SIGKILL. False (nothing done) when it is not stopping."""
        if not self._stopping.is_set():
            return False
        logger.warning("asked again to stop: terminating every backend now")
        self.reaper.terminate_now()
        return True

    def _start(self, tg: anyio.abc.TaskGroup, upstream: Upstream) -> None:
        self._live.add(upstream)
        tg.start_soon(upstream.run, name=f"upstream {upstream.id}")

    async def _wait_first_attempts(
        self, upstreams: list[Upstream], stop: anyio.Event, connect_timeout: float
    ) -> None:
        """Until each of these replicas has connected or failed once, or the gateway is
        stopped.

        Each first attempt is bounded by connect_timeout; the margin covers teardown.
        `self.startup` hears how each one ended.
        """
        began, waiting = time.monotonic(), list(upstreams)
        self.startup.starting([u.id for u in upstreams])

        async def report(upstream: Upstream) -> None:
            await upstream.first_attempt.wait()
            waiting.remove(upstream)
            self.startup.replica_done(
                ReplicaOutcome.of(upstream, time.monotonic() - began, connect_timeout)
            )

        with anyio.move_on_after(connect_timeout + _FIRST_ATTEMPT_MARGIN):
            async with anyio.create_task_group() as tg:

                async def until_stopped() -> None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until_stopped)
                async with anyio.create_task_group() as attempts:
                    for upstream in upstreams:
                        attempts.start_soon(report, upstream)
                tg.cancel_scope.cancel()
        if not stop.is_set():  # the rest are still connecting: the gateway starts without
            for upstream in waiting:
                self.startup.replica_done(
                    ReplicaOutcome.unfinished(upstream, time.monotonic() - began)
                )

    async def _stop(self, tg: anyio.abc.TaskGroup) -> None:
        live = list(self._live)
        logger.info("stopping %d backend replicas", len(live))
        with anyio.CancelScope(shield=True):
            for upstream in live:
                await upstream.stop()
            with anyio.move_on_after(_STOP_GRACE):
                for upstream in live:
                    await upstream.stopped.wait()
        self.reaper.close()
        if self.audit is not None:
            self.audit.close()
        await self._stop_tracing()
        left = [u.id for u in live if not u.stopped.is_set()]
        if left:
            logger.error("replicas still stopping after %gs, cancelled: %s", _STOP_GRACE, left)
        else:
            logger.info("all backend replicas stopped")
        tg.cancel_scope.cancel()

    def _start_tracing(self) -> None:
        settings = self.config.gateway.tracing
        if settings is None:
            return
        self.tracer = tracing.start(settings, source=self.config.source)
        self._trace(self.groups.values())

    def _trace(self, groups: Iterable[ReplicaGroup]) -> None:
        """Attempt spans and HTTP trace headers for these groups, while tracing is on."""
        if self.tracer is None:
            return
        for group in groups:
            group.tracer = self.tracer
            for upstream in group.replicas:
                upstream.on_http_request = tracing.inject_headers

    async def _stop_tracing(self) -> None:
        tracer, self.tracer = self.tracer, None
        if tracer is not None:
            for group in self.groups.values():
                group.tracer = None
            await tracer.shutdown()  # exports the spans still queued

    def _log_summary(self) -> None:
        self.startup.ready(StartupSummary.of(self.groups, self.catalog))

    # ------------------------------------------------------------------ reconfiguration

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

    def config_names(self) -> set[str]:
        """Every server name in the running config (disabled ones included)."""
        return {server.name for server in self.config.servers}

    async def _detached(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run `work` in the gateway's task group, one at a time, and wait for it.

        A caller that goes away (an HTTP client that hangs up) does not cut a
        reconfiguration in half; the gateway's shutdown does end it.
        """
        tg = self._tg
        if tg is None:
            raise ReloadError("the gateway is not running")
        outcome: list[_T] = []
        failure: list[BaseException] = []
        done = anyio.Event()

        async def run() -> None:
            try:
                async with self._reload_lock:
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
        """Make `file` + `registered` the running config (under the reload lock)."""
        composed, shadowed = compose(file, registered)
        report = diff(self.config, composed)
        running = keep_restart_settings(self.config, composed)
        pinner = self.pinner
        gateway, old = running.gateway, self.config.gateway
        if (gateway.pin, gateway.lock_file, running.base_dir) != (
            old.pin,
            old.lock_file,
            self.config.base_dir,
        ):
            pinner = _pinner(running)
            pinner.load()  # a broken lock file: ConfigError, nothing changed yet
        for key in report.restart_needed:
            logger.warning("config reload: %s changed; it takes effect after a restart", key)
        for name in shadowed:
            logger.warning(
                "server %r registered at runtime is dropped: the config file defines it now",
                name,
            )

        # 1. Start the new and changed servers beside the running ones.
        fresh = self._build_groups(
            running,
            (s for s in running.replica_specs() if s.group in {*report.added, *report.changed}),
        )
        starting = [u for group in fresh.values() for u in group.replicas]
        wanted = self.log_levels.most_verbose()
        tg = self._tg
        if tg is None:
            raise ReloadError("the gateway is stopping")
        for upstream in starting:
            upstream.log_level = wanted
            self._start(tg, upstream)
        if starting:
            await self._wait_first_attempts(
                starting, self._stopping, running.gateway.connect_timeout
            )
            if self._tg is None:
                raise ReloadError("the gateway stopped while the new servers started")

        # 2. Switch: the catalog now routes to the new config's groups only.
        retired = [self.groups[name] for name in (*report.removed, *report.changed)]
        self.groups = {
            name: fresh[name] if name in fresh else self.groups[name]
            for name in dict.fromkeys(spec.group for spec in running.replica_specs())
        }
        self._link_failovers()
        old_audit = self._switch_settings(running, pinner)
        self._file_config = keep_restart_settings(self.config, file)
        self.config = running
        self.registered = {n: s for n, s in registered.items() if n not in shadowed}
        await self._refresh_catalog()

        # 3. Drain and stop what left; a replaced server's subscriptions move over.
        async with anyio.create_task_group() as drains:
            for group in retired:
                drains.start_soon(self._retire, group, name=f"retire {group.name}")
                successor = self.groups.get(group.name)
                if successor is not None and successor.prefix == group.prefix:
                    drains.start_soon(self._carry_subscriptions, group, successor)
        if old_audit is not None:
            old_audit.close()
        return report

    def _switch_settings(self, new: Config, pinner: Pinner) -> audit.AuditLog | None:
        """The gateway-level call settings of `new`; returns an audit log to close once
        the calls that may still write to it have drained."""
        old, settings = self.config.gateway, new.gateway
        limits = ("rate_limit", "max_argument_bytes", "max_result_bytes")
        if any(getattr(old, key) != getattr(settings, key) for key in limits):
            self.limits = CallLimits(settings)
        if self.access is not None and old.roles != settings.roles:
            self.access.policy = AccessPolicy(settings.roles)
        self.pinner = pinner
        self._secrets |= redact.secrets_of(new.model_dump())
        redact.install(self._secrets)
        audit_settings = ("audit_log", "audit_arguments")
        if all(getattr(old, key) == getattr(settings, key) for key in audit_settings):
            return None
        retiring, self.audit = self.audit, _audit_log(new)
        return retiring

    async def _carry_subscriptions(self, old: ReplicaGroup, new: ReplicaGroup) -> None:
        """Resource subscriptions clients hold through a replaced server, held again."""
        for uri in sorted({uri for replica in old.replicas for uri in replica.subscriptions}):
            await _quietly(new.subscribe(uri), f"subscribe {uri} on {new.name}")

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
        for upstream in group.replicas:
            await upstream.stop()
        with anyio.move_on_after(_STOP_GRACE):
            for upstream in group.replicas:
                await upstream.stopped.wait()
        self._live.difference_update(group.replicas)
        logger.info("server %r stopped (%d replicas)", group.name, len(group.replicas))

    # ------------------------------------------------------------------ catalog refresh

    def _build_catalog(self, *, strict: bool) -> Catalog:
        """The backends' listings merged, pinned, and with the gateway's own tools.

        `strict` (startup): a name collision is an error; a refresh leaves the later
        name out instead, and reports pinning changes only once.
        """
        merged = build_catalog(self.groups.values(), self.config.gateway.separator, strict=strict)
        pinned = self.pinner.apply(merged, reload=not strict)
        local = with_local_tools(pinned, self.local_tools, strict=strict)
        return self.search.apply(local, strict=strict)  # last: it counts every other tool

    def _on_upstream_change(self, upstream: Upstream) -> None:
        # A replica that changed state may have started a process: guard its group.
        self.reaper.adopt_children()
        self._changed.set()

    async def _rebuild_on_change(self) -> None:
        while True:
            await self._changed.wait()
            await anyio.sleep(_REBUILD_DEBOUNCE)
            self._changed = anyio.Event()
            await self._refresh_catalog()

    async def _refresh_catalog(self) -> None:
        """Rebuild the catalog, and tell clients what changed in it."""
        before = self.catalog
        after = self._build_catalog(strict=False)
        old, new = before.signature(), after.signature()
        self.catalog = after
        if old != new:
            logger.info(
                "catalog changed: %d tools, %d prompts", len(after.tools), len(after.prompts)
            )
            await self._announce(
                tools=old[0] != new[0], resources=old[1:3] != new[1:3], prompts=old[3] != new[3]
            )

    async def _announce(self, *, tools: bool, resources: bool, prompts: bool) -> None:
        """Tell connected clients which lists changed, in their era's way."""
        if tools:
            await self.bus.publish(ToolsListChanged())
        if resources:
            await self.bus.publish(ResourcesListChanged())
        if prompts:
            await self.bus.publish(PromptsListChanged())
        for connection in list(self._connections):
            if connection.protocol_version.startswith(_MODERN_ERA):
                continue  # modern era: list_changed travels only on subscriptions/listen
            if not connection.has_standalone_channel:
                continue
            with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                if tools:
                    await connection.send_tool_list_changed()
                if resources:
                    await connection.send_resource_list_changed()
                if prompts:
                    await connection.send_prompt_list_changed()

    def track(self, connection: Connection) -> None:
        self._connections.add(connection)

    # ------------------------------------------------------------------ calls

    def tool_for_caller(self, name: str) -> CallTarget | None:
        """The tool the current caller may call under `name`; None is "unknown tool"."""
        tool = self.catalog.tool(name)
        return tool if tool is not None and self.visible(name) else None

    def visible(self, name: str) -> bool:
        """Whether the current caller's roles let it see an exposed name or URI."""
        return self.access is None or self.access.grant().allows(name)

    def uri_allowed(self, uri: str) -> bool:
        """Whether the current caller may see the exposed resource URI (a resource, or
        one of a template it may see); an unknown URI is not allowed."""
        if self.access is None:
            return True
        resource = self.catalog.resource(uri)
        if resource is not None:
            return self.visible(resource.exposed)
        template = self.catalog.template_for(uri)
        return template is not None and self.visible(template.uri_template)

    def completion_allowed(self, ref: dict[str, Any]) -> bool:
        """Whether the current caller may see what a `completion/complete` ref names."""
        if self.access is None:
            return True
        if ref.get("type") == "ref/prompt":
            return self.visible(str(ref.get("name")))
        uri = str(ref.get("uri"))
        if any(t.uri_template == uri for t in self.catalog.templates):
            return self.visible(uri)
        return self.uri_allowed(uri)

    async def call(self, tool: CallTarget, arguments: dict[str, Any]) -> dict[str, Any]:
        """One client call of a tool, as a wire result: admitted by the gateway's
        limits, relayed (a backend tool through its group), audited, counted, traced."""
        with (
            tracing.tool_call(self.tracer, tool) as ended,
            audit.record(
                self.audit,
                tool.name,
                tool.server,
                arguments,
                self.observe_call if ended is None else _both(self.observe_call, ended),
            ) as entry,
        ):
            refused = (
                None
                if getattr(tool, "relays_calls", False)  # admitted as the call it makes
                else self.limits.admit(tool.name, arguments)  # rate limit, argument size
            )
            if refused is not None:
                return entry.refused(refused)
            relayed = await tool.relay(arguments)
            return entry.result(self.limits.checked(tool.name, relayed), relayed)  # result size

    # ------------------------------------------------------------------ session state

    async def set_log_level(self, connection: Connection | None, level: str) -> None:
        """A client's `logging/setLevel`: kept for its connection, and backends are
        asked for the most verbose level any client wants."""
        if connection is not None:
            self.log_levels.set(connection, level)  # type: ignore[arg-type]
        wanted = self.log_levels.most_verbose() or level
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                if upstream.log_level != wanted:
                    tg.start_soon(_quietly, upstream.set_log_level(wanted), upstream.id)  # type: ignore[arg-type]

    async def subscribe(self, subscriber: object, uri: str) -> None:
        """Subscribe a client connection or listen stream to an exposed resource URI;
        the owning backend is subscribed once, however many clients are."""
        route = self.catalog.route_uri(uri)
        if route is None or not self.uri_allowed(uri):
            raise MCPError(mcp_types.INVALID_PARAMS, f"Unknown resource: {uri}")
        group, backend_uri = route
        await group.subscribe(backend_uri)
        self._subscribers.setdefault(uri, weakref.WeakSet()).add(subscriber)

    async def unsubscribe(self, subscriber: object, uri: str) -> None:
        """The backend is unsubscribed when its last subscriber leaves."""
        subscribers = self._subscribers.get(uri)
        if subscribers is not None:
            subscribers.discard(subscriber)
        if subscribers:
            return
        self._subscribers.pop(uri, None)
        route = self.catalog.route_uri(uri)
        if route is not None:
            await route[0].unsubscribe(route[1])

    async def roots_changed(self) -> None:
        """A client's roots changed: backends that asked for roots should ask again."""
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                tg.start_soon(_quietly, upstream.roots_changed(), upstream.id)

    async def _on_resource_updated(self, upstream: Upstream, backend_uri: str) -> None:
        """A backend resource changed: tell the clients subscribed to it."""
        uri = exposed_uri(upstream.spec.prefix, backend_uri)
        await self.bus.publish(ResourceUpdated(uri=uri))
        subscribers = list(self._subscribers.get(uri, ()))
        if not subscribers:
            # Its last subscriber's connection closed without unsubscribing.
            await _quietly(self.unsubscribe(None, uri), f"unsubscribe {uri}")
        for subscriber in subscribers:
            if isinstance(subscriber, Connection):
                with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                    await subscriber.send_resource_updated(uri)

    # ------------------------------------------------------------------ serving

    def build_server(self, *, http: bool = False) -> FastMCP[Any]:
        """The FastMCP server that serves the catalog; its lifespan is `running()`.

        For the HTTP front (`http`) with `[gateway.auth]`, the server verifies bearer
        tokens (401 without a valid one) and shows each caller what its roles allow.
        """
        settings = self.config.gateway
        if http and settings.auth is not None:
            self.access = CallerAccess(settings)
        provider = GatewayProvider(
            lambda: self.catalog,
            lifespan=self.running,
            access=self.access.grant if self.access is not None else None,
        )
        server = _GatewayServer(
            self,
            name=settings.name,
            providers=[provider],
            middleware=[_ConnectionTracker(self)],
            auth=build_verifier(self.access.auth) if self.access is not None else None,
        )
        if http:
            for route in ops_routes(self):
                server._additional_http_routes.append(route)  # what custom_route() adds to
        return server


class _GatewayServer(FastMCP[Any]):
    """FastMCP, with a direct path for `tools/call` to a backend tool.

    FastMCP's own path builds a request context, runs the middleware chain, resolves
    the tool through every provider's transforms and visibility rules, opens spans and
    wraps the result; measured, that is most of the gateway's CPU per call. A relayed
    call needs none of it while no middleware takes part in calls: the catalog lookup
    is a dict hit and the backend's result is already the wire result. With middleware
    that does take part (auth, rate limits), calls take FastMCP's full path.
    """

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gateway = gateway
        server = self._mcp_server
        server.add_request_handler(
            "resources/subscribe", mcp_types.SubscribeRequestParams, self._on_subscribe
        )
        server.add_request_handler(
            "resources/unsubscribe", mcp_types.UnsubscribeRequestParams, self._on_unsubscribe
        )
        server.add_request_handler(
            "completion/complete", mcp_types.CompleteRequestParams, self._on_complete
        )
        server.add_notification_handler(
            "notifications/roots/list_changed",
            mcp_types.NotificationParams,
            self._on_roots_changed,
        )
        self._listen = ListenHandler(gateway.bus)
        server.add_request_handler(
            "subscriptions/listen", mcp_types.SubscriptionsListenRequestParams, self._on_listen
        )

    def _caller(self, ctx: ServerRequestContext) -> Caller:
        return Caller.of(ctx, self._gateway.log_levels)

    async def _on_call_tool(
        self, ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams
    ) -> Any:
        token = current_caller.set(self._caller(ctx))
        try:
            tool = self._gateway.tool_for_caller(params.name)
            if tool is None:
                gateway = self._gateway
                audit.unknown_tool(
                    gateway.audit, gateway.observe_call, params.name, params.arguments
                )
            if tool is None or not _calls_bypass(self.middleware):
                # FastMCP's path runs the tool, which calls back into `Gateway.call`.
                calls = tool_calls.set(self._gateway.call)
                try:
                    return await super()._on_call_tool(ctx, params)
                finally:
                    tool_calls.reset(calls)
            return await self._gateway.call(tool, params.arguments or {})
        finally:
            current_caller.reset(token)

    async def _on_read_resource(
        self, ctx: ServerRequestContext, params: mcp_types.ReadResourceRequestParams
    ) -> Any:
        token = current_caller.set(self._caller(ctx))
        try:
            with tracing.request_span(self._gateway.tracer, "resources/read", uri=params.uri):
                return await super()._on_read_resource(ctx, params)
        finally:
            current_caller.reset(token)

    async def _on_get_prompt(
        self, ctx: ServerRequestContext, params: mcp_types.GetPromptRequestParams
    ) -> Any:
        token = current_caller.set(self._caller(ctx))
        try:
            with tracing.request_span(self._gateway.tracer, "prompts/get", prompt=params.name):
                return await super()._on_get_prompt(ctx, params)
        finally:
            current_caller.reset(token)

    async def _on_set_logging_level(
        self, ctx: ServerRequestContext, params: mcp_types.SetLevelRequestParams
    ) -> mcp_types.EmptyResult:
        result = await super()._on_set_logging_level(ctx, params)
        await self._gateway.set_log_level(connection_of(ctx), params.level)
        return result

    async def _on_subscribe(
        self, ctx: ServerRequestContext, params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        connection = connection_of(ctx)
        if connection is None:
            raise MCPError(mcp_types.INVALID_REQUEST, "resources/subscribe needs a session")
        await self._gateway.subscribe(connection, str(params.uri))
        return mcp_types.EmptyResult()

    async def _on_roots_changed(
        self, ctx: ServerRequestContext, params: mcp_types.NotificationParams | None
    ) -> None:
        await self._gateway.roots_changed()

    async def _on_listen(
        self, ctx: ServerRequestContext, params: mcp_types.SubscriptionsListenRequestParams
    ) -> Any:
        """A modern-era change stream (the SDK's ListenHandler), whose resource
        subscriptions hold the owning backends' subscriptions while it lasts."""
        stream = _ListenStream()
        uris = list(params.notifications.resource_subscriptions or ())
        try:
            for uri in uris:
                await self._gateway.subscribe(stream, uri)
            return await self._listen(ctx, params)
        finally:
            with anyio.CancelScope(shield=True):
                for uri in uris:
                    await _quietly(self._gateway.unsubscribe(stream, uri), f"unsubscribe {uri}")

    async def _on_unsubscribe(
        self, ctx: ServerRequestContext, params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        connection = connection_of(ctx)
        if connection is not None:
            await self._gateway.unsubscribe(connection, str(params.uri))
        return mcp_types.EmptyResult()

    async def _on_complete(
        self, ctx: ServerRequestContext, params: mcp_types.CompleteRequestParams
    ) -> Any:
        wire = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        route = self._gateway.catalog.route_completion(wire["ref"])
        if route is None or not self._gateway.completion_allowed(wire["ref"]):
            # As a server without that prompt or template would: nothing to offer.
            return mcp_types.CompleteResult(completion=mcp_types.Completion(values=[]))
        group, ref = route
        wire["ref"] = ref
        wire.pop("_meta", None)
        token = current_caller.set(self._caller(ctx))
        try:
            return hop_wire(await group.complete(wire))
        finally:
            current_caller.reset(token)


class _ListenStream:
    """Stands for one listen stream among a resource's subscribers."""


def _calls_bypass(middleware: list[Middleware]) -> bool:
    """Whether no middleware would see a tools/call (so the direct path changes nothing)."""
    hooks = ("__call__", "on_message", "on_request", "on_call_tool")
    return all(
        getattr(type(mw), hook) is getattr(Middleware, hook) for mw in middleware for hook in hooks
    )


def _pinner(config: Config) -> Pinner:
    return Pinner(config.gateway.pin, config.base_dir / config.gateway.lock_file)


def _audit_log(config: Config) -> audit.AuditLog | None:
    settings = config.gateway
    if settings.audit_log is None:
        return None
    return audit.AuditLog(
        config.base_dir / settings.audit_log,
        arguments=settings.audit_arguments,
        auth=settings.auth,
    )


def _breaker(config: BreakerConfig) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=config.failure_threshold,
        reset_timeout=config.reset_timeout,
        half_open_calls=config.half_open_calls,
        failure_rate=config.failure_rate,
        window=config.window,
        min_calls=config.min_calls,
    )


class _ConnectionTracker(Middleware):
    """Remembers client connections so catalog changes can be announced to them.

    FastMCP has no broadcast API: a notification sent from a request reaches only
    that request's client. The SDK's per-connection object is what can notify later.
    """

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def on_initialize(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        # Only handshake-era connections initialize, and only they take unsolicited
        # list_changed notifications: tracking them here keeps this off every call.
        result = await call_next(context)
        ctx = context.fastmcp_context
        if ctx is not None:
            connection = getattr(ctx.session, "_connection", None)
            if isinstance(connection, Connection):
                self._gateway.track(connection)
        return result


def _both(first: audit.CallObserver | None, then: audit.CallObserver) -> audit.CallObserver:
    """One observer of a call's record that tells `first` (if any), then `then`."""
    if first is None:
        return then

    def observe(record: audit.CallRecord) -> None:
        first(record)
        then(record)

    return observe


async def _quietly(call: Awaitable[object], what: str) -> None:
    try:
        await call
    except Exception as exc:
        logger.warning("%s: %s", what, exc)


async def _first_of(event_wait: Awaitable[object], task: asyncio.Task[None]) -> None:
    """Wait until the event is set or the task has ended, whichever comes first."""
    waiter = asyncio.ensure_future(event_wait)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
