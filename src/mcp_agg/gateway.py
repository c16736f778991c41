"""Gateway: the replicas, their groups, the merged catalog, and the FastMCP server over them.

`Gateway.running()` is the one life cycle used by every command: it starts every replica
at once, waits until each has connected or failed (each bounded by `connect_timeout`),
builds the catalog, and keeps it current while backends come and go. Leaving it stops
every replica and reaps every backend process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import anyio
import mcp_types
from fastmcp import FastMCP
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext

from mcp_agg.catalog import Catalog, build_catalog
from mcp_agg.config import BreakerConfig, Config
from mcp_agg.group import ReplicaGroup
from mcp_agg.provider import GatewayProvider
from mcp_agg.reaper import Reaper
from mcp_agg.resilience.balancer import make_balancer
from mcp_agg.resilience.breaker import CircuitBreaker
from mcp_agg.resilience.health import HealthPolicy
from mcp_agg.upstream import Upstream

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)

#: Coalesce bursts of backend changes (a restart changes state several times).
_REBUILD_DEBOUNCE = 0.05
#: How long replicas get to close their sessions and reap their processes on shutdown.
_STOP_GRACE = 10.0
#: Eras whose connections accept unsolicited list_changed notifications.
_MODERN_ERA = "2026-"


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        gateway = config.gateway
        health = HealthPolicy(
            interval=gateway.health_interval,
            unhealthy_threshold=gateway.unhealthy_threshold,
            healthy_threshold=gateway.healthy_threshold,
        )
        self.upstreams = [
            Upstream(
                spec,
                connect_timeout=gateway.connect_timeout,
                on_change=self._on_upstream_change,
                breaker=_breaker(config.breaker_for(spec.server)),
                health=health,
            )
            for spec in config.replica_specs()
        ]
        members: dict[str, list[Upstream]] = {}
        for upstream in self.upstreams:
            members.setdefault(upstream.group, []).append(upstream)
        self.groups = {
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
        standbys = sorted(
            (g for g in self.groups.values() if g.server.failover_for is not None),
            key=lambda g: g.server.priority,
        )
        for standby in standbys:
            primary = self.groups.get(standby.server.failover_for or "")
            if primary is not None:
                primary.failovers.append(standby)
        self.catalog = Catalog()
        self.reaper = Reaper()
        self._changed = anyio.Event()
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    # ------------------------------------------------------------------ life cycle

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Start every replica, build the catalog, and stop and reap everything on exit.

        The replicas' task group lives in a task of its own: FastMCP enters a provider's
        lifespan in one cancel scope and leaves it in another, which a task group held
        across the `yield` would not survive.
        """
        started = anyio.Event()
        stop = anyio.Event()
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
                tg.start_soon(upstream.run, name=f"upstream {upstream.id}")
            try:
                await self._wait_first_attempts(stop)
                if stop.is_set():
                    return  # stopped while starting: straight to reaping
                self.catalog = build_catalog(
                    self.groups.values(), self.config.gateway.separator, strict=True
                )
                self._log_summary()
                tg.start_soon(self._rebuild_on_change, name="catalog")
                started.set()
                await stop.wait()
            finally:
                await self._stop(tg)

    async def _wait_first_attempts(self, stop: anyio.Event) -> None:
        """Until every replica has connected or failed once, or the gateway is stopped.

        Each first attempt is bounded by connect_timeout; the margin covers teardown.
        """
        with anyio.move_on_after(self.config.gateway.connect_timeout + 5):
            async with anyio.create_task_group() as tg:

                async def until_stopped() -> None:
                    await stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(until_stopped)
                for upstream in self.upstreams:
                    await upstream.first_attempt.wait()
                tg.cancel_scope.cancel()

    async def _stop(self, tg: anyio.abc.TaskGroup) -> None:
        logger.info("stopping %d backend replicas", len(self.upstreams))
        with anyio.CancelScope(shield=True):
            for upstream in self.upstreams:
                await upstream.stop()
            with anyio.move_on_after(_STOP_GRACE):
                for upstream in self.upstreams:
                    await upstream.stopped.wait()
        self.reaper.close()
        left = [u.id for u in self.upstreams if not u.stopped.is_set()]
        if left:
            logger.error("replicas still stopping after %gs, cancelled: %s", _STOP_GRACE, left)
        else:
            logger.info("all backend replicas stopped")
        tg.cancel_scope.cancel()

    def _log_summary(self) -> None:
        for upstream in self.upstreams:
            if not upstream.available:
                logger.error(
                    "backend %s is not available (%s); retrying in the background",
                    upstream.id,
                    upstream.stats.last_error or upstream.state,
                )
        logger.info(
            "catalog: %d tools, %d resources, %d templates, %d prompts from %d/%d replicas",
            len(self.catalog.tools),
            len(set(map(id, self.catalog.resources.values()))),
            len(self.catalog.templates),
            len(self.catalog.prompts),
            sum(u.available for u in self.upstreams),
            len(self.upstreams),
        )

    # ------------------------------------------------------------------ catalog refresh

    def _on_upstream_change(self, upstream: Upstream) -> None:
        # A replica that changed state may have started a process: guard its group.
        self.reaper.adopt_children()
        self._changed.set()

    async def _rebuild_on_change(self) -> None:
        while True:
            await self._changed.wait()
            await anyio.sleep(_REBUILD_DEBOUNCE)
            self._changed = anyio.Event()
            before = self.catalog
            after = build_catalog(self.groups.values(), self.config.gateway.separator, strict=False)
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
        """Tell connected clients which lists changed, where their era allows it."""
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

    # ------------------------------------------------------------------ serving

    def build_server(self) -> FastMCP[Any]:
        """The FastMCP server that serves the catalog; its lifespan is `running()`."""
        provider = GatewayProvider(lambda: self.catalog, lifespan=self.running)
        return _GatewayServer(
            self,
            name=self.config.gateway.name,
            providers=[provider],
            middleware=[_ConnectionTracker(self)],
        )


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

    async def _on_call_tool(
        self, ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams
    ) -> Any:
        tool = self._gateway.catalog.tools.get(params.name)
        if tool is None or not _calls_bypass(self.middleware):
            return await super()._on_call_tool(ctx, params)
        return await tool.relay(params.arguments or {})


def _calls_bypass(middleware: list[Middleware]) -> bool:
    """Whether no middleware would see a tools/call (so the direct path changes nothing)."""
    hooks = ("__call__", "on_message", "on_request", "on_call_tool")
    return all(
        getattr(type(mw), hook) is getattr(Middleware, hook) for mw in middleware for hook in hooks
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


async def _first_of(event_wait: Awaitable[object], task: asyncio.Task[None]) -> None:
    """Wait until the event is set or the task has ended, whichever comes first."""
    waiter = asyncio.ensure_future(event_wait)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
