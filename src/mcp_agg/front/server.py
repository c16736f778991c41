"""The FastMCP server over a gateway: what stdio and HTTP clients talk to.

`build_server` makes it. Its lists and lookups come from the gateway's catalog (the
`GatewayProvider`), its lifespan is the gateway's `running()`, and the requests FastMCP
does not serve itself, or serves too slowly for a relay, have handlers here:

- `tools/call` goes straight down the gateway's call pipeline. FastMCP's own path builds
  a request context, runs the middleware chain, resolves the tool through every
  provider's transforms and visibility rules, opens spans and wraps the result;
  measured, that is most of the gateway's CPU per call, and a relayed call needs none
  of it while no middleware takes part in calls. With middleware that does, a call
  takes FastMCP's path, which ends in the same pipeline (`PipelineTool.run`);
- resource subscriptions, `completion/complete`, `notifications/roots/list_changed` and
  `subscriptions/listen` reach the backends through the gateway's session state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import fastmcp
import mcp_types
from fastmcp import FastMCP
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPError

from mcp_agg import __version__
from mcp_agg.backend.listing import ListMethod
from mcp_agg.components.forwarding import hop_wire
from mcp_agg.config import ServerConfig
from mcp_agg.core.announce import Announcer
from mcp_agg.core.bridge import PARKED_STATE, Bridge, backend_round, passed_through
from mcp_agg.core.cache import Caching
from mcp_agg.core.cachehints import merge_hints
from mcp_agg.core.caller import Caller, connection_of, current_caller
from mcp_agg.core.gateway import Gateway
from mcp_agg.core.pipeline import CallPipeline
from mcp_agg.core.sessions import quietly
from mcp_agg.front.provider import GatewayProvider
from mcp_agg.front.requeststate import ephemeral_request_state
from mcp_agg.observability import tracing

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.webflow import WebSignIn

__all__ = ["build_server"]


def build_server(gateway: Gateway, *, http: bool = False) -> FastMCP[Any]:
    """The FastMCP server that serves the gateway's catalog; its lifespan is `running()`.

    For the HTTP front (`http`) with `[gateway.auth]`, the server verifies bearer
    tokens (401 without a valid one) and shows each caller what its roles allow.
    """
    _spans_off()
    # What only the HTTP front uses is imported here: the console's templates (jinja2),
    # sign-in and token checks cost the stdio front memory (docs/benchmarks.md).
    settings = gateway.config.gateway
    visibility = gateway.visibility
    verifier = None
    if http and settings.auth is not None:
        from mcp_agg.security.auth import CallerAccess, build_verifier

        visibility.access = CallerAccess(settings)
        verifier = build_verifier(settings.auth)
    provider = GatewayProvider(
        lambda: gateway.catalog, lifespan=gateway.running, visibility=visibility
    )
    server = _GatewayServer(
        gateway,
        name=settings.name,
        version=__version__,  # else FastMCP's own version is the gateway's serverInfo
        providers=[provider],
        middleware=[_ConnectionTracker(gateway.announcer)],
        auth=verifier,
        request_state_security=ephemeral_request_state(),
    )
    if http:
        from mcp_agg.front.ops import ops_routes

        team = gateway.sessions.team
        # The browser sign-in (token_key and a public URL): users' of `per_user` servers,
        # and the gateway's own, started from the console. Its modules are imported only
        # for a gateway that has one.
        flow: WebSignIn | None = None
        if team is not None:
            from mcp_agg.backend.oauth.webflow import WebSignIn
            from mcp_agg.front.signin import GatewaySignIns, signin_routes

            flow = WebSignIn(
                team.links,
                team.tokens,
                gateway.store,
                lambda name: _server_named(gateway, name),
                GatewaySignIns(gateway),
            )
        # What custom_route() adds to: the operator's routes, then the sign-in's.
        server._additional_http_routes += ops_routes(gateway, flow)
        if flow is not None:
            server._additional_http_routes += signin_routes(flow)
    return server


def _spans_off() -> None:
    """FastMCP's own spans off, its trace propagation kept (`propagation_only`).

    Its default (`native`) opens a span per request at its middleware seam: ~20 µs of
    CPU a request, ~4 µs without it. The gateway never installs its provider process-wide
    (`mcp_agg.observability.tracing`), so those spans were no-op ones; what they did that
    counts, carrying a caller's trace context, `propagation_only` still does. An
    operator's `FASTMCP_TELEMETRY_MODE=off` is left as it is.
    """
    if fastmcp.settings.telemetry_mode == "native":
        fastmcp.settings.telemetry_mode = "propagation_only"


def _server_named(gateway: Gateway, name: str) -> ServerConfig | None:
    """The enabled server of that name in the running config (for a sign-in)."""
    return next((s for s in gateway.config.servers if s.name == name and s.enabled), None)


class _GatewayServer(FastMCP[Any]):
    """FastMCP, with the gateway's handlers for calls, subscriptions, completions,
    roots and listen streams (module docstring)."""

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._gateway = gateway
        self._bridge = Bridge(
            lambda: gateway.task_group, lambda: gateway.config.gateway.request_timeout
        )
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
            "notifications/initialized", mcp_types.NotificationParams, self._on_initialized
        )
        server.add_notification_handler(
            "notifications/roots/list_changed",
            mcp_types.NotificationParams,
            self._on_roots_changed,
        )
        self._listen = ListenHandler(gateway.bus)
        # Without it the SDK's modern-era HTTP entry finds a called tool's schema (for
        # its Mcp-Param header check) by running a whole tools/list on every tools/call
        # with arguments; the catalog has it at hand.
        server.get_tool_input_schema = self._input_schema
        server.add_request_handler(
            "subscriptions/listen", mcp_types.SubscriptionsListenRequestParams, self._on_listen
        )

    @property
    def calls(self) -> CallPipeline:
        """Where every tools/call goes (`mcp_agg.core.views.ServesCalls`)."""
        return self._gateway.calls

    @property
    def cache(self) -> Caching:
        """The response cache resource reads look in (`mcp_agg.core.views.ServesReads`)."""
        return self._gateway.cache

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        """The input schema of the tool `name` as the current caller sees it (None:
        not one it may call, which the call itself then refuses)."""
        tool = self._gateway.catalog.tool(name)
        if tool is None or not self._gateway.visibility.allows(name):
            return None
        return tool.parameters

    def _caller(self, ctx: ServerRequestContext) -> Caller:
        sessions = self._gateway.sessions
        if sessions.stdio_client is not None:
            sessions.client_seen(connection_of(ctx))
        return Caller.of(ctx, sessions.log_levels)

    async def _on_call_tool(
        self, ctx: ServerRequestContext, params: mcp_types.CallToolRequestParams
    ) -> Any:
        async def call() -> Any:
            calls = self._gateway.calls
            tool = calls.lookup(params.name)
            if tool is None:
                calls.unknown(params.name, params.arguments)
            if tool is None or not _calls_bypass(self.middleware):
                # FastMCP's path: its middleware, then the tool's `run` (the pipeline
                # too), or its answer to an unknown name.
                return await super(_GatewayServer, self)._on_call_tool(ctx, params)
            return await calls.call(tool, params.arguments or {}, params.meta)

        return await self._relayed(ctx, params, call)

    async def _on_read_resource(
        self, ctx: ServerRequestContext, params: mcp_types.ReadResourceRequestParams
    ) -> Any:
        async def read() -> Any:
            with tracing.request_span(self._gateway.tracer, "resources/read", uri=params.uri):
                return await super(_GatewayServer, self)._on_read_resource(ctx, params)

        return await self._relayed(ctx, params, read)

    async def _on_get_prompt(
        self, ctx: ServerRequestContext, params: mcp_types.GetPromptRequestParams
    ) -> Any:
        async def get() -> Any:
            with tracing.request_span(self._gateway.tracer, "prompts/get", prompt=params.name):
                return await super(_GatewayServer, self)._on_get_prompt(ctx, params)

        return await self._relayed(ctx, params, get)

    async def _relayed(
        self,
        ctx: ServerRequestContext,
        params: mcp_types.InputResponseRequestParams,
        work: Callable[[], Awaitable[Any]],
    ) -> Any:
        """Run `work` for the client request `ctx`, the backend's messages relayed to it.

        A modern-era client's retry of an input-required round either resumes a call the
        gateway parked (core/bridge.py) or, the round being a modern-era backend's, is
        sent on to it with the client's answers.
        """
        caller = self._caller(ctx)
        state = params.request_state
        if state is not None and state.startswith(PARKED_STATE):
            return await self._bridge.resume(caller, state, _raw(ctx).get("inputResponses"))
        if state is not None or params.input_responses is not None:
            caller.backend_round = backend_round(_raw(ctx), state)

        async def passing() -> Any:
            return passed_through(await work())

        token = current_caller.set(caller)
        try:
            if self._bridge.wanted(caller):
                return await self._bridge.start(caller, passing)
            return await passing()
        finally:
            current_caller.reset(token)

    # The merged lists carry the cache hints of their parts (core/cachehints.py). Set
    # here, on the result, they take precedence over the SDK's defaults (`ttlMs: 0`,
    # `private`), which the server's runner fills in only for fields left unset.

    async def _on_list_tools(
        self, ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        return _hinted(await super()._on_list_tools(ctx, params), self._gateway, "tools/list")

    async def _on_list_resources(
        self, ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourcesResult:
        result = await super()._on_list_resources(ctx, params)
        return _hinted(result, self._gateway, "resources/list")

    async def _on_list_resource_templates(
        self, ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListResourceTemplatesResult:
        result = await super()._on_list_resource_templates(ctx, params)
        return _hinted(result, self._gateway, "resources/templates/list")

    async def _on_list_prompts(
        self, ctx: ServerRequestContext, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListPromptsResult:
        return _hinted(await super()._on_list_prompts(ctx, params), self._gateway, "prompts/list")

    async def _on_set_logging_level(
        self, ctx: ServerRequestContext, params: mcp_types.SetLevelRequestParams
    ) -> mcp_types.EmptyResult:
        result = await super()._on_set_logging_level(ctx, params)
        await self._gateway.sessions.set_log_level(connection_of(ctx), params.level)
        return result

    async def _on_subscribe(
        self, ctx: ServerRequestContext, params: mcp_types.SubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        connection = connection_of(ctx)
        if connection is None:
            raise MCPError(mcp_types.INVALID_REQUEST, "resources/subscribe needs a session")
        token = current_caller.set(self._caller(ctx))  # a per-client server: its session
        try:
            await self._gateway.sessions.subscribe(connection, str(params.uri))
        finally:
            current_caller.reset(token)
        return mcp_types.EmptyResult()

    async def _on_roots_changed(
        self, ctx: ServerRequestContext, params: mcp_types.NotificationParams | None
    ) -> None:
        await self._gateway.sessions.roots_changed(connection_of(ctx))

    async def _on_initialized(
        self, ctx: ServerRequestContext, params: mcp_types.NotificationParams | None
    ) -> None:
        connection = connection_of(ctx)
        if connection is not None:
            await self._gateway.sessions.client_initialized(connection)

    async def _on_listen(
        self, ctx: ServerRequestContext, params: mcp_types.SubscriptionsListenRequestParams
    ) -> Any:
        """A modern-era change stream (the SDK's ListenHandler), whose resource
        subscriptions hold the owning backends' subscriptions while it lasts."""
        sessions = self._gateway.sessions
        stream = _ListenStream()
        uris = list(params.notifications.resource_subscriptions or ())
        try:
            for uri in uris:
                await sessions.subscribe(stream, uri)
            return await self._listen(ctx, params)
        finally:
            with anyio.CancelScope(shield=True):
                for uri in uris:
                    await quietly(sessions.unsubscribe(stream, uri), f"unsubscribe {uri}")

    async def _on_unsubscribe(
        self, ctx: ServerRequestContext, params: mcp_types.UnsubscribeRequestParams
    ) -> mcp_types.EmptyResult:
        connection = connection_of(ctx)
        if connection is not None:
            token = current_caller.set(self._caller(ctx))
            try:
                await self._gateway.sessions.unsubscribe(connection, str(params.uri))
            finally:
                current_caller.reset(token)
        return mcp_types.EmptyResult()

    async def _on_complete(
        self, ctx: ServerRequestContext, params: mcp_types.CompleteRequestParams
    ) -> Any:
        wire = params.model_dump(by_alias=True, mode="json", exclude_none=True)
        route = self._gateway.catalog.route_completion(wire["ref"])
        if route is None or not self._gateway.visibility.allows_completion(wire["ref"]):
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


_Listed = TypeVar(
    "_Listed",
    mcp_types.ListToolsResult,
    mcp_types.ListResourcesResult,
    mcp_types.ListResourceTemplatesResult,
    mcp_types.ListPromptsResult,
)


def _hinted(result: _Listed, gateway: Gateway, method: ListMethod) -> _Listed:
    """The merged list with the merge of its parts' hints: every backend's answer to
    `method`, an empty one too (core/cachehints.py)."""
    listings = [group.listing for group in gateway.groups.values()]
    hint = merge_hints(
        listing.hints[method]
        for listing in listings
        if listing is not None and method in listing.hints
    )
    return result.model_copy(update={"ttl_ms": hint.ttl_ms, "cache_scope": hint.scope})


def _raw(ctx: ServerRequestContext) -> Mapping[str, Any]:
    """The request's params as they came (after the request-state boundary)."""
    return ctx.params if isinstance(ctx.params, Mapping) else {}


class _ListenStream:
    """Stands for one listen stream among a resource's subscribers."""


def _calls_bypass(middleware: list[Middleware]) -> bool:
    """Whether no middleware would see a tools/call (so the direct path changes nothing)."""
    hooks = ("__call__", "on_message", "on_request", "on_call_tool")
    return all(
        getattr(type(mw), hook) is getattr(Middleware, hook) for mw in middleware for hook in hooks
    )


class _ConnectionTracker(Middleware):
    """Remembers client connections so catalog changes can be announced to them.

    FastMCP has no broadcast API: a notification sent from a request reaches only
    that request's client. The SDK's per-connection object is what can notify later.
    """

    def __init__(self, announcer: Announcer) -> None:
        self._announcer = announcer

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
                self._announcer.track(connection)
        return result
