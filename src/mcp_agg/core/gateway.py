"""Gateway: the replicas, their groups, the merged catalog, and what serves it.

`Gateway` is the composition root: it holds the running config's replicas and groups,
the catalog, the call settings (limits, pinning, audit log, metrics, tracing) and the
parts that work on them, each in a module of its own:

- `pipeline.CallPipeline` (`calls`): the one path of every `tools/call`;
- `sessions.Sessions` (`sessions`): clients' log levels, subscriptions and roots;
- `announce.Announcer` (`announcer`): the catalog kept current, changes announced;
- `reconfigure.Reconfigurer` (`reconfigurer`): a new config run without a restart;
- `build`: replicas, groups and failovers as a config sets them up.

The FastMCP server over it is the front's (`mcp_agg.front.server.build_server`).

`Gateway.running()` is the one life cycle used by every command: it starts every replica
at once, waits until each has connected or failed (each bounded by `connect_timeout`),
builds the catalog, and keeps it current while backends come and go. Leaving it stops
every replica and reaps every backend process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from mcp.server.subscriptions import InMemorySubscriptionBus

from mcp_agg.backend.oauth.team import team_sign_in
from mcp_agg.backend.reaper import Reaper
from mcp_agg.backend.upstream import Upstream
from mcp_agg.components.search import SearchMode
from mcp_agg.config import Config, ReplicaSpec
from mcp_agg.console.startup import LogStartup, ReplicaOutcome, StartupObserver, StartupSummary
from mcp_agg.core import build
from mcp_agg.core.announce import Announcer
from mcp_agg.core.cache import Caching
from mcp_agg.core.catalog import Catalog, LocalTools, build_catalog, with_local_tools
from mcp_agg.core.pipeline import CallPipeline
from mcp_agg.core.reconfigure import Reconfigurer
from mcp_agg.core.registry import SharedRegistrations
from mcp_agg.core.sessions import Sessions
from mcp_agg.core.uris import UriMemory
from mcp_agg.observability import audit, tracing
from mcp_agg.resilience.group import ReplicaGroup
from mcp_agg.security.access import Visibility
from mcp_agg.security.limits import CallLimits
from mcp_agg.store import Store, open_store

if TYPE_CHECKING:
    from mcp_agg.backend.early import EarlyStarts
    from mcp_agg.components.local import LocalTool
    from mcp_agg.observability.metrics import GatewayMetrics

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

#: How long replicas get to close their sessions and reap their processes on shutdown.
_STOP_GRACE = 10.0
#: Beyond connect_timeout, how long startup waits for first attempts (their teardown).
_FIRST_ATTEMPT_MARGIN = 5.0


class Gateway:
    def __init__(self, config: Config, early: EarlyStarts | None = None) -> None:
        """`early`: the stdio backends `serve` started before importing the gateway; each
        replica's first session takes its process, and the gateway keeps their reaper."""
        self.config = config
        #: Spans of calls and attempts while running with `[gateway.tracing]`; None
        #: (no cost per call) without it.
        self.tracer: tracing.Tracer | None = None
        #: Told how each replica's first attempt ends, and the startup's summary.
        self.startup: StartupObserver = LogStartup()
        self.reaper = Reaper() if early is None else early.reaper
        #: Modern-era clients hear of changes on `subscriptions/listen` streams fed by this.
        self.bus = InMemorySubscriptionBus()
        self.catalog = Catalog()
        #: The URIs backends handed out, kept across catalog rebuilds (`core/uris.py`).
        self.uris = UriMemory()
        #: What the current caller may see; per-role on an authenticated HTTP front
        #: (`build_server(http=True)` with `[gateway.auth]` sets its access).
        self.visibility = Visibility(lambda: self.catalog)
        self.sessions = Sessions(self, self.bus)
        self.announcer = Announcer(self, self.bus)
        self.groups = self.build_groups(config, config.replica_specs())
        build.link_failovers(self.groups)
        for upstream in self.upstreams:
            upstream.early_starts = early
        #: State shared with the other replicas of a fleet (`[gateway.store]`); in
        #: process without one.
        self.store: Store = open_store(config.gateway.store)
        #: The response cache (`core/cache.py`): a stage of the call pipeline only while
        #: some server caches calls; resource reads whose backend's hints allow it. In
        #: the store with `[gateway.store]`, else in process.
        self.cache = Caching(config, self.store)
        #: Where the users of `per_user` servers sign in and their tokens rest.
        self.sessions.team = team_sign_in(config.gateway, self.store)
        #: Rate limits and size limits of `tools/call` (`security/limits.py`).
        self.limits = CallLimits(config.gateway, self.store)
        #: Tool pinning against the lock file, applied to every catalog built.
        self.pinner = build.pinner_for(config)
        #: One JSON line per tools/call; None (no cost per call) without `audit_log`.
        self.audit = build.audit_log_for(config)
        #: Prometheus metrics (`[gateway] metrics`), a registry of this gateway's own, and
        #: what every call's record is told to; None (no cost per call) until they can be
        #: read (`collect_metrics`).
        self.metrics: GatewayMetrics | None = None
        self.observe_call: audit.CallObserver | None = None
        self.calls = CallPipeline(self)
        #: Search mode: the search and call tools instead of a long tool list.
        self.search = SearchMode(self.calls, self.visibility, lambda: self.config.gateway)
        #: Where the gateway's own tools come from (fan-out, gateway tools while
        #: `expose_gateway_tools` is on), applied to every catalog built.
        self.local_tools: list[LocalTools] = [self._fanout_tools, self._gateway_tools]
        self._fanout: LocalTools | None = None
        self._own: LocalTools | None = None
        self.reconfigurer = Reconfigurer(self)
        #: Servers registered through the admin API, the same on every replica.
        self.registrations = SharedRegistrations(self.store, self.reconfigurer)
        #: Every replica started and not yet stopped: those serving, those of a new
        #: config still connecting, and those of an old one still draining.
        self._live: set[Upstream] = set()
        #: The running replicas' task group, while the gateway runs (reconfigure
        #: starts replicas in it); None before startup and once stopping.
        self._tg: anyio.abc.TaskGroup | None = None
        self._stopping = anyio.Event()

    @property
    def upstreams(self) -> list[Upstream]:
        """Every replica of every server in the running config, in config order."""
        return [upstream for group in self.groups.values() for upstream in group.replicas]

    @property
    def task_group(self) -> anyio.abc.TaskGroup | None:
        """Where the gateway's work runs while it runs; None before and once stopping."""
        return self._tg

    def build_groups(self, config: Config, specs: Iterable[ReplicaSpec]) -> dict[str, ReplicaGroup]:
        """The replicas of these specs in their groups, wired to this gateway (not
        started). Used at startup and by a reconfiguration alike."""
        groups = build.build_groups(
            config,
            specs,
            on_change=self._on_upstream_change,
            on_resource_updated=self._on_resource_updated,
            front=self.sessions,
        )
        self._trace(groups.values())  # servers a reload adds are traced as the others
        return groups

    def _fanout_tools(self, catalog: Catalog) -> Mapping[str, LocalTool]:
        """The `[[fanout]]` tools; their module is imported at the first config with one
        (most have none, and every import is CPU the start shares with its backends)."""
        if self._fanout is None:
            if not self.config.fanout:
                return {}
            from mcp_agg.components.fanout import fanout_tools

            self._fanout = fanout_tools(self)
        return self._fanout(catalog)

    def _gateway_tools(self, catalog: Catalog) -> Mapping[str, LocalTool]:
        """The gateway's own tools; their module is imported once a config exposes them."""
        if self._own is None:
            if not self.config.gateway.expose_gateway_tools:
                return {}
            from mcp_agg.components.gateway_tools import gateway_tools

            self._own = gateway_tools(self)
        return self._own(catalog)

    def assemble_catalog(self, *, strict: bool) -> Catalog:
        """The backends' listings merged, pinned, and with the gateway's own tools.

        `strict` (startup): a name collision the config made is an error; else, and on
        a refresh, the contested names are left out and logged (once, not at every
        rebuild), and pinning changes are reported only once.
        """
        merged = build_catalog(
            self.groups.values(),
            self.config.gateway.separator,
            strict=strict,
            memory=self.uris,
        )
        for problem in merged.problems:
            if problem not in self.catalog.problems:
                logger.error("%s", problem)
        pinned = self.pinner.apply(merged, reload=not strict)
        local = with_local_tools(pinned, self.local_tools, strict=strict)
        return self.search.apply(local, strict=strict)  # last: it counts every other tool

    def collect_metrics(self) -> GatewayMetrics | None:
        """Start keeping metrics, once, where someone can read them (`/metrics` on the
        HTTP front, `serve --metrics-port`, the `gateway_metrics` tool); None with
        `[gateway] metrics = false`."""
        if self.metrics is None and self.config.gateway.metrics:
            from mcp_agg.observability.metrics import GatewayMetrics  # prometheus-client

            self.metrics = GatewayMetrics(self)
            self.observe_call = self.metrics.observe
        return self.metrics

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
        failed_to_start = False
        try:
            await _first_of(started.wait(), supervisor)
            failed_to_start = supervisor.done()
            if failed_to_start:
                supervisor.result()  # raises the startup failure (e.g. a name collision)
            yield self
        finally:
            stop.set()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({supervisor})
            failure = None if supervisor.cancelled() else supervisor.exception()
            # A startup failure was raised to the caller (the CLI says it in one line and
            # exits 2): not logged again as a traceback.
            if failure is not None and not failed_to_start:
                logger.error("gateway shutdown failed", exc_info=failure)

    async def _supervise(self, started: anyio.Event, stop: anyio.Event) -> None:
        self.reaper.start()
        try:
            await self._serve(started, stop)
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.aclose()

    async def _serve(self, started: anyio.Event, stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            for upstream in self.upstreams:
                self._start(tg, upstream)
            try:
                await self.wait_first_attempts(
                    self.upstreams, self.config.gateway.connect_timeout, stop
                )
                if stop.is_set():
                    return  # stopped while starting: straight to reaping
                self.catalog = self.assemble_catalog(strict=True)
                self._log_summary()
                tg.start_soon(self.announcer.run, name="catalog")
                self._tg = tg
                await self.registrations.load()  # a restarted replica runs them at once
                tg.start_soon(self.registrations.follow, name="registrations")
                started.set()
                await stop.wait()
            finally:
                self._tg = None
                await self._stop(tg)

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

    def launch(self, upstreams: Sequence[Upstream]) -> bool:
        """Start these replicas in the running gateway; False (none started) when it is
        not running."""
        tg = self._tg
        if tg is None:
            return False
        for upstream in upstreams:
            self._start(tg, upstream)
        return True

    def _start(self, tg: anyio.abc.TaskGroup, upstream: Upstream) -> None:
        self._live.add(upstream)
        tg.start_soon(upstream.run, name=f"upstream {upstream.id}")

    async def wait_first_attempts(
        self,
        upstreams: Sequence[Upstream],
        connect_timeout: float,
        stop: anyio.Event | None = None,
    ) -> None:
        """Until each of these replicas has connected or failed once, or `stop` is set
        (by default: the gateway is stopped).

        Each first attempt is bounded by connect_timeout; the margin covers teardown.
        `self.startup` hears how each one ended.
        """
        stop = self._stopping if stop is None else stop
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

    async def stop_replicas(self, upstreams: Sequence[Upstream]) -> None:
        """Stop these replicas, and give them a grace to close their sessions and reap
        their processes."""
        for upstream in upstreams:
            await upstream.stop()
        with anyio.move_on_after(_STOP_GRACE):
            for upstream in upstreams:
                await upstream.stopped.wait()
        self._live.difference_update(upstreams)

    async def _stop(self, tg: anyio.abc.TaskGroup) -> None:
        live = list(self._live)
        logger.info("stopping %d backend replicas", len(live))
        with anyio.CancelScope(shield=True):
            await self.stop_replicas(live)
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

    def _on_upstream_change(self, upstream: Upstream) -> None:
        # A replica that changed state may have started a process: guard its group.
        self.reaper.adopt_children()
        # Its lists may have changed (list_changed), or it restarted: what it answered
        # before may no longer hold.
        self.cache.forget(upstream.group)
        if self.cache.shared is not None and self._tg is not None:
            self._tg.start_soon(self.cache.clear, upstream.group)
        self.announcer.changed()

    async def _on_resource_updated(self, upstream: Upstream, backend_uri: str) -> None:
        self.cache.forget(upstream.group, backend_uri)
        await self.cache.clear(upstream.group, backend_uri)
        await self.sessions.resource_updated(upstream, backend_uri)

    def _log_summary(self) -> None:
        self.startup.ready(StartupSummary.of(self.groups, self.catalog))

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


async def _first_of(event_wait: Awaitable[object], task: asyncio.Task[None]) -> None:
    """Wait until the event is set or the task has ended, whichever comes first."""
    waiter = asyncio.ensure_future(event_wait)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
