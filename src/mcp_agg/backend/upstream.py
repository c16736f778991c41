"""Upstream: one backend replica, its long-lived MCP session and its life cycle.

A replica keeps one client session for its whole life; every call reuses it (FastMCP's
own proxy opens a session, or spawns a process, per call). A supervisor task connects,
fetches the replica's listing, serves until the session is lost, and reconnects with
jittered exponential backoff until the gateway stops:

    registered → connecting → connected ⇄ error → stopped
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from mcp_agg.backend.process import OutputCapture, launched_process
from mcp_agg.backend.transports import RequestHook, make_transport, relay_options
from mcp_agg.config import ReplicaSpec
from mcp_agg.core.caller import Caller, current_caller
from mcp_agg.errors import (
    FailureKind,
    UpstreamConnectError,
    UpstreamRequestError,
    UpstreamTimeout,
    UpstreamUnavailable,
    classify,
    connection_lost,
)
from mcp_agg.resilience.balancer import PeakEwma
from mcp_agg.resilience.breaker import CircuitBreaker
from mcp_agg.resilience.health import HealthPolicy, HealthState

__all__ = ["Listing", "ReplicaState", "Upstream"]

logger = logging.getLogger(__name__)

#: Reconnect backoff: 0.5 s doubling to 30 s, with jitter so replicas that failed
#: together do not come back in lockstep.
RECONNECT_WAIT = wait_exponential_jitter(multiplier=0.5, max=30.0, jitter=0.5)
#: How often a launched HTTP backend's port is probed while it starts.
_LAUNCH_POLL = 0.1
#: A session that lived this long (seconds) was not a crash loop.
STABLE_AFTER = 5.0
_METHOD_NOT_FOUND = -32601
#: How long closing a backend session may take before it is abandoned (seconds).
_CLOSE_GRACE = 2.0


class ReplicaState(enum.StrEnum):
    REGISTERED = "registered"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Listing:
    """What one replica offers, as the backend described it (raw MCP types)."""

    tools: tuple[mcp_types.Tool, ...] = ()
    resources: tuple[mcp_types.Resource, ...] = ()
    templates: tuple[mcp_types.ResourceTemplate, ...] = ()
    prompts: tuple[mcp_types.Prompt, ...] = ()


@dataclass(slots=True)
class ReplicaStats:
    calls: int = 0
    failures: int = 0
    in_flight: int = 0
    connects: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    connected_at: float | None = None
    protocol_version: str | None = None
    server_name: str | None = None


class _ListChangedHandler(MessageHandler):
    """Turns a backend's list_changed notifications into a listing refresh, and relays
    its resource updates."""

    def __init__(
        self, on_change: Callable[[], None], on_updated: Callable[[str], Awaitable[None]]
    ) -> None:
        self._on_change = on_change
        self._on_updated = on_updated

    async def on_resource_updated(self, message: mcp_types.ResourceUpdatedNotification) -> None:
        await self._on_updated(str(message.params.uri))

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self._on_change()

    async def on_resource_list_changed(
        self, message: mcp_types.ResourceListChangedNotification
    ) -> None:
        self._on_change()

    async def on_prompt_list_changed(
        self, message: mcp_types.PromptListChangedNotification
    ) -> None:
        self._on_change()


class Upstream:
    """One backend replica."""

    def __init__(
        self,
        spec: ReplicaSpec,
        *,
        connect_timeout: float,
        on_change: Callable[[Upstream], None] = lambda _: None,
        breaker: CircuitBreaker | None = None,
        health: HealthPolicy | None = None,
        on_resource_updated: Callable[[Upstream, str], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self.connect_timeout = connect_timeout
        self.breaker = breaker or CircuitBreaker()
        self.health = HealthState(health or HealthPolicy(interval=0))
        self.ewma = PeakEwma()
        self.state = ReplicaState.REGISTERED
        self.listing = Listing()
        self.stats = ReplicaStats()
        self._on_change = on_change
        self._on_resource_updated = on_resource_updated
        #: The client requests whose calls are in flight on this session, oldest first.
        self._callers: list[Caller] = []
        #: The log level backends are asked to send at (`logging/setLevel`), if any.
        self.log_level: mcp_types.LoggingLevel | None = None
        #: Backend URIs the gateway holds a subscription for on this replica.
        self.subscriptions: set[str] = set()
        self.output = OutputCapture(spec.id)
        #: Sees every HTTP request to the backend before it is sent (trace context).
        self.on_http_request: RequestHook | None = None
        self._client: Client[Any] | None = None
        self._lost = anyio.Event()
        self._stopping = False
        self._stop_event = anyio.Event()
        self._refresh = anyio.Event()
        self._attempt: anyio.CancelScope | None = None
        #: Set once the first connection attempt has succeeded or failed.
        self.first_attempt = anyio.Event()
        #: Set when the supervisor has closed the session and ended.
        self.stopped = anyio.Event()

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def group(self) -> str:
        return self.spec.group

    @property
    def available(self) -> bool:
        """Connected and not ejected by health checks (the breaker is the group's concern)."""
        return (
            self.state is ReplicaState.CONNECTED
            and self._client is not None
            and self.health.healthy
        )

    # What a balancing strategy reads (resilience.balancer.LoadView).
    @property
    def weight(self) -> float:
        return self.spec.server.weight

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    @property
    def latency(self) -> float:
        return self.ewma.value

    def __repr__(self) -> str:
        return f"<Upstream {self.id} {self.state}>"

    # ------------------------------------------------------------------ life cycle

    async def run(self) -> None:
        """Supervise the replica until `stop()`: connect, serve, reconnect with backoff."""
        flapping = 0
        try:
            while not self._stopping:
                retrying = AsyncRetrying(
                    wait=RECONNECT_WAIT,
                    retry=retry_if_exception_type(Exception),
                    stop=self._should_stop,
                    sleep=self._sleep_unless_stopping,
                    before_sleep=self._log_retry,
                    reraise=True,
                )
                with contextlib.suppress(Exception):
                    async for attempt in retrying:
                        with attempt:
                            await self._serve_once()
                # The session worked and was lost. Reconnect at once, unless it keeps
                # dying young: then back off as for a failure to connect.
                lived = time.time() - (self.stats.connected_at or 0.0)
                flapping = flapping + 1 if lived < STABLE_AFTER else 0
                if flapping and not self._stopping:
                    delay = min(30.0, 0.5 * 2 ** min(flapping, 6))
                    logger.warning(
                        "backend %s keeps dropping; reconnecting in %.1fs", self.id, delay
                    )
                    await self._sleep_unless_stopping(delay)
        finally:
            self.state = ReplicaState.STOPPED
            self.first_attempt.set()
            self.stopped.set()
            self._notify()

    async def stop(self) -> None:
        """Ask the supervisor to close the session and stop; returns at once."""
        self._stopping = True
        self._stop_event.set()
        self._lost.set()
        if self._attempt is not None:
            self._attempt.cancel()

    def _should_stop(self, _state: RetryCallState) -> bool:
        return self._stopping

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._stop_event.wait()

    def _log_retry(self, state: RetryCallState) -> None:
        if self._stopping:
            return
        delay = state.next_action.sleep if state.next_action else 0.0
        logger.warning("backend %s: %s; retrying in %.1fs", self.id, self.stats.last_error, delay)

    async def _serve_once(self) -> None:
        """One connection: connect, list, serve until lost. Raises if connecting fails."""
        self.state = ReplicaState.CONNECTING
        self._lost = anyio.Event()
        self._notify()
        try:
            async with self._connected_client() as client:
                self._client = client
                self.stats.connects += 1
                self.stats.connected_at = time.time()
                self.stats.protocol_version = client.protocol_version
                info = client.server_info
                self.stats.server_name = info.name if info else None
                self.state = ReplicaState.CONNECTED
                self.health.reset()
                # The first connection is reported by the startup feedback (`Gateway.startup`),
                # or by a reload's: here only in detail, at DEBUG; a reconnection at INFO.
                logger.log(
                    logging.INFO if self.stats.connects > 1 else logging.DEBUG,
                    "backend %s %s (%s, protocol %s): %d tools, %d resources, "
                    "%d templates, %d prompts",
                    self.id,
                    "reconnected" if self.stats.connects > 1 else "connected",
                    self.spec.server.kind,
                    client.protocol_version,
                    len(self.listing.tools),
                    len(self.listing.resources),
                    len(self.listing.templates),
                    len(self.listing.prompts),
                )
                self.first_attempt.set()
                self._notify()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._refresh_on_request, client)
                    if self.health.policy.interval > 0:
                        tg.start_soon(self._check_health)
                    await self._lost.wait()
                    tg.cancel_scope.cancel()
        except Exception as exc:
            if self._stopping:
                return
            self._record_error(exc)
            self.state = ReplicaState.ERROR
            self.first_attempt.set()
            self._notify()
            raise
        finally:
            self._client = None
        if not self._stopping:
            logger.warning("backend %s: connection lost: %s", self.id, self.stats.last_error)
            self.state = ReplicaState.ERROR
            self._notify()

    @contextlib.asynccontextmanager
    async def _connected_client(self) -> AsyncIterator[Client[Any]]:
        """A connected, listed client; the backend's process (if any) lives as long as it."""
        server = self.spec.server
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self.output.aclose)
            try:
                with anyio.fail_after(self.connect_timeout), anyio.CancelScope() as attempt:
                    # stop() cancels a connection attempt at once: a backend still
                    # starting must not hold up (or outlive) a shutdown.
                    self._attempt = attempt
                    if self._stopping:
                        attempt.cancel()
                    if server.url is not None and server.command is not None:
                        client = await self._connect_launched(stack)
                    else:
                        stderr = self.output.open() if server.url is None else None
                        try:
                            transport = make_transport(self.spec, stderr, self.on_http_request)
                            client = await self._enter(stack, transport)
                        finally:
                            self.output.close_writer()
                    self.listing = await self._fetch_listing(client)
                    await self._restore_session_state(client)
            except TimeoutError as exc:
                raise UpstreamConnectError(
                    f"did not connect within connect_timeout ({self.connect_timeout:g}s)",
                    replica=self.id,
                ) from exc
            except Exception:
                await self.output.aclose()  # read what the backend said before it failed
                raise
            finally:
                self._attempt = None
            if attempt.cancelled_caught:
                raise UpstreamConnectError("stopped while connecting", replica=self.id)
            yield client

    async def _connect_launched(self, stack: contextlib.AsyncExitStack) -> Client[Any]:
        """Start an HTTP backend's process, then connect once it listens."""
        server = self.spec.server
        command = self.spec.command
        assert command is not None
        process = await stack.enter_async_context(
            launched_process(
                command, list(server.args), dict(server.env), self.spec.cwd, self.output
            )
        )
        while True:
            try:
                transport = make_transport(self.spec, on_request=self.on_http_request)
                return await self._enter(stack, transport)
            except Exception:
                if process.returncode is not None:
                    raise UpstreamConnectError(
                        f"process exited with code {process.returncode}", replica=self.id
                    ) from None
                await anyio.sleep(_LAUNCH_POLL)  # still binding its port

    async def _enter(self, stack: contextlib.AsyncExitStack, transport: Any) -> Client[Any]:
        client: Client[Any] = Client(
            transport,
            name=f"mcp-agg/{self.id}",
            # A lambda, not `self._refresh.set`: the event is replaced after each refresh.
            message_handler=_ListChangedHandler(
                lambda: self._refresh.set(), self._resource_updated
            ),
            init_timeout=self.connect_timeout,
            # The handshake era, which every backend speaks (other SDKs speak no other):
            # on it a backend may log, ask for sampling, elicitation and roots during a
            # call and announce changes, all of which the gateway relays to its clients.
            # On the modern era a FastMCP backend refuses imperative elicitation.
            mode="legacy",
        )
        # Not exposed by the constructor: the session class and header policy of a relay.
        client._transport_options = relay_options()
        # The SDK's own callbacks, not FastMCP's wrappers: the gateway relays the
        # backend's requests as they are to the client whose call they belong to.
        client._session_kwargs["logging_callback"] = self._relay_log
        client._session_kwargs["sampling_callback"] = self._relay_sampling
        client._session_kwargs["elicitation_callback"] = self._relay_elicitation
        client._session_kwargs["list_roots_callback"] = self._relay_roots
        await client.__aenter__()  # type: ignore[no-untyped-call]
        stack.push_async_callback(_close_quietly, client)
        return client

    async def _fetch_listing(self, client: Client[Any]) -> Listing:
        caps = client.server_capabilities
        tools: list[mcp_types.Tool] = []
        resources: list[mcp_types.Resource] = []
        templates: list[mcp_types.ResourceTemplate] = []
        prompts: list[mcp_types.Prompt] = []
        if caps is None or caps.tools is not None:
            tools = await _optional(client.list_tools())
        if caps is None or caps.resources is not None:
            resources = await _optional(client.list_resources())
            templates = await _optional(client.list_resource_templates())
        if caps is None or caps.prompts is not None:
            prompts = await _optional(client.list_prompts())
        return Listing(tuple(tools), tuple(resources), tuple(templates), tuple(prompts))

    async def _restore_session_state(self, client: Client[Any]) -> None:
        """What clients set up through the gateway, applied to a new backend session."""
        caps = client.server_capabilities
        try:
            if self.log_level is not None and caps is not None and caps.logging is not None:
                await client.session.set_logging_level(self.log_level)
            for uri in sorted(self.subscriptions):
                await client.session.subscribe_resource(uri)
        except MCPError as exc:
            # The backend refused what it accepted on its last session: keep serving.
            logger.warning("backend %s: restoring session state: %s", self.id, exc)

    async def _resource_updated(self, uri: str) -> None:
        if self._on_resource_updated is not None:
            await self._on_resource_updated(self, uri)

    async def _refresh_on_request(self, client: Client[Any]) -> None:
        """Refetch the listing whenever the backend says a list changed."""
        while True:
            await self._refresh.wait()
            self._refresh = anyio.Event()
            try:
                self.listing = await self._fetch_listing(client)
            except Exception as exc:
                self._lose(exc)
                return
            logger.info("backend %s: listing refreshed", self.id)
            self._notify()

    def _notify(self) -> None:
        try:
            self._on_change(self)
        except Exception:
            logger.exception("change handler failed for %s", self.id)

    def _record_error(self, exc: BaseException) -> None:
        said = self.output.last_line
        self.stats.last_error = _describe(exc) + (f" (stderr: {said})" if said else "")
        self.stats.last_error_at = time.time()

    def _lose(self, exc: BaseException) -> None:
        """The session is unusable: record why and let the supervisor reconnect."""
        self._record_error(exc)
        if self.state is ReplicaState.CONNECTED:
            self.state = ReplicaState.ERROR
        self._lost.set()

    # ------------------------------------------------------------------ requests

    def _require_client(self) -> Client[Any]:
        client = self._client
        if client is None or self.state is not ReplicaState.CONNECTED:
            raise UpstreamUnavailable(f"backend {self.id} is {self.state}", replica=self.id)
        if _session_closed(client):
            # The process died or the connection dropped since the last call: nothing
            # has been sent yet, so another replica may take this one.
            self._lose(UpstreamConnectError("connection closed", replica=self.id))
            raise UpstreamUnavailable(f"backend {self.id}: connection closed", replica=self.id)
        return client

    @contextlib.asynccontextmanager
    async def _request(self, what: str) -> AsyncIterator[Client[Any]]:
        client = self._require_client()
        self.stats.in_flight += 1
        self.stats.calls += 1
        started = time.monotonic()
        caller = current_caller.get()
        if caller is not None:
            self._callers.append(caller)
        try:
            yield client
            self.ewma.observe(time.monotonic() - started)
        except MCPError as exc:
            if connection_lost(exc):
                self.stats.failures += 1
                self._lose(exc)
                raise UpstreamRequestError(
                    f"backend {self.id}: {what}: {_describe(exc)}", replica=self.id
                ) from exc
            raise  # the backend's own JSON-RPC error: relayed as it is
        except TimeoutError as exc:
            self.stats.failures += 1
            raise UpstreamTimeout(f"backend {self.id}: {what}: timed out", replica=self.id) from exc
        except anyio.get_cancelled_exc_class():
            # Abandoned (deadline, attempt timeout, client cancel): its latency is at
            # least this long, which is what a balancer should know of a hung replica.
            self.ewma.observe(time.monotonic() - started)
            raise
        except UpstreamUnavailable:
            raise
        except Exception as exc:
            self.stats.failures += 1
            if connection_lost(exc):
                self._lose(exc)
            # Keep the one classification: a failure to connect sent nothing.
            error = (
                UpstreamConnectError
                if classify(exc) is FailureKind.NOT_SENT
                else UpstreamRequestError
            )
            raise error(f"backend {self.id}: {what}: {_describe(exc)}", replica=self.id) from exc
        finally:
            self.stats.in_flight -= 1
            if caller is not None:
                self._callers.remove(caller)

    # ------------------------------------------------------------------ relayed to clients

    def _owner(self) -> Caller | None:
        """The client request that a log message or server request now belongs to.

        The newest call in flight, provided every call in flight came from the same
        client connection; otherwise nobody (see relay.py).
        """
        callers = self._callers
        if not callers:
            return None
        newest = callers[-1]
        connection = newest.connection
        if connection is None and len(callers) > 1:
            return None
        if any(c.connection is not connection for c in callers):
            return None
        return newest

    async def _relay_log(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        logger.debug(
            "backend %s log [%s] %s: %s", self.id, params.level, params.logger, params.data
        )
        caller = self._owner()
        if caller is not None:
            with contextlib.suppress(Exception):  # the client went away: its loss
                await caller.log(params)

    async def _relay_request(self, request: mcp_types.ServerRequest, result_type: type[Any]) -> Any:
        what = f"{request.method} from backend {self.id}"
        caller = self._owner()
        if caller is None:
            reason = (
                "calls of several clients are in flight on this backend session"
                if self._callers
                else "no client call is in flight on this backend session"
            )
            return mcp_types.ErrorData(
                code=mcp_types.INVALID_REQUEST,
                message=f"{what}: the gateway cannot tell which client to ask: {reason}",
            )
        try:
            return await caller.request(request, result_type, what)
        except MCPError as exc:
            return exc.error
        except Exception as exc:
            return mcp_types.ErrorData(
                code=mcp_types.INTERNAL_ERROR, message=f"{what}: the client was not asked: {exc}"
            )

    async def _relay_sampling(
        self, context: Any, params: mcp_types.CreateMessageRequestParams
    ) -> Any:
        result_type = (
            mcp_types.CreateMessageResultWithTools
            if params.tools
            else mcp_types.CreateMessageResult
        )
        return await self._relay_request(mcp_types.CreateMessageRequest(params=params), result_type)

    async def _relay_elicitation(self, context: Any, params: mcp_types.ElicitRequestParams) -> Any:
        return await self._relay_request(
            mcp_types.ElicitRequest(params=params), mcp_types.ElicitResult
        )

    async def _relay_roots(self, context: Any) -> Any:
        return await self._relay_request(mcp_types.ListRootsRequest(), mcp_types.ListRootsResult)

    # ------------------------------------------------------------------ session state

    async def set_log_level(self, level: mcp_types.LoggingLevel) -> None:
        """Ask the backend to send log messages from `level` up (kept for reconnects)."""
        self.log_level = level
        client = self._client
        caps = client.server_capabilities if client is not None else None
        if client is None or caps is None or caps.logging is None:
            return
        async with self._request("logging/setLevel") as client:
            await client.session.set_logging_level(level)

    async def subscribe(self, uri: str) -> None:
        async with self._request(f"resources/subscribe {uri}") as client:
            await client.session.subscribe_resource(uri)
        self.subscriptions.add(uri)

    async def unsubscribe(self, uri: str) -> None:
        self.subscriptions.discard(uri)
        async with self._request(f"resources/unsubscribe {uri}") as client:
            await client.session.unsubscribe_resource(uri)

    async def roots_changed(self) -> None:
        """Tell the backend the client's roots changed, if it is connected."""
        client = self._client
        if client is not None and self.state is ReplicaState.CONNECTED:
            await client.session.send_roots_list_changed()

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """A completion/complete, params and result in their wire form."""
        async with self._request("completion/complete") as client:
            return await self._send_raw(client, "completion/complete", params)

    async def probe(self) -> None:
        """One health probe: a cheap request that works in both protocol eras.

        `ping` does not exist in the modern era; `tools/list` is served by every
        server the gateway lists tools from.
        """
        client = self._require_client()
        with anyio.fail_after(self.health.policy.timeout):
            await client.session.list_tools()

    async def _check_health(self) -> None:
        policy = self.health.policy
        while True:
            await anyio.sleep(policy.interval)
            try:
                await self.probe()
            except Exception as exc:
                changed = self.health.record(ok=False)
                if changed:
                    logger.warning(
                        "backend %s ejected: health probe failed: %s", self.id, _describe(exc)
                    )
                if connection_lost(exc) or isinstance(exc, UpstreamUnavailable):
                    self._lose(exc)
                    return
            else:
                changed = self.health.record(ok=True)
                if changed:
                    logger.info("backend %s readmitted: health probes pass", self.id)
            if changed:
                self._notify()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A tools/call, answered in its wire form (the JSON object the backend sent).

        A relay does not need the result as objects: the SDK would validate the backend's
        JSON twice into a `CallToolResult` only for the gateway to dump it again. The
        request goes out as the SDK's own `ClientSession.call_tool` sends it (the session's
        per-era stamp sets the protocol `_meta` and the Mcp-* headers), but the answer is
        kept as JSON; the gateway's server validates it once, for the client's protocol
        version, on the way out. Errors are the SDK's (MCPError on a JSON-RPC error).
        """
        async with self._request(f"tools/call {name}") as client:
            params: dict[str, Any] = {"name": name, "arguments": arguments}
            if meta:
                params["_meta"] = dict(meta)
            return await self._send_raw(client, "tools/call", params)

    async def _send_raw(
        self, client: Client[Any], method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Send a request as the SDK's session would, and keep its answer as JSON.

        The session's per-era stamp sets the protocol `_meta` and the Mcp-* headers;
        the calling client's progress token, if it gave one, gets the backend's
        progress for this request.
        """
        session = client.session
        data: dict[str, Any] = {"method": method, "params": params}
        options: CallOptions = {}
        session._stamp(data, options)
        caller = current_caller.get()
        if caller is not None and caller.progress:
            options["on_progress"] = caller.report_progress
        request = session._dispatcher.send_raw_request(method, data["params"], options)
        if self.spec.server.url is None:
            return await request
        # An HTTP error is raised in the session's task, not in the caller's: watch it.
        return await client._await_with_session_monitoring(request)

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        async with self._request(f"resources/read {uri}") as client:
            return await client.read_resource_mcp(uri)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None
    ) -> mcp_types.GetPromptResult:
        async with self._request(f"prompts/get {name}") as client:
            return await client.get_prompt_mcp(name, arguments)


async def _optional(coro: Any) -> list[Any]:
    """A list call that a backend may not implement: "method not found" is an empty list."""
    try:
        return list(await coro)
    except MCPError as exc:
        if exc.error.code == _METHOD_NOT_FOUND:
            return []
        raise


def _session_closed(client: Client[Any]) -> bool:
    """Whether the client's session has already lost its connection.

    The SDK marks its dispatcher closed when the transport ends (a stdio process exited,
    an HTTP stream broke); there is no public flag, so this reads it defensively.
    """
    try:
        dispatcher = getattr(client.session, "_dispatcher", None)
    except RuntimeError:
        return True  # no session at all
    return bool(getattr(dispatcher, "_closed", False))


async def _close_quietly(client: Client[Any]) -> None:
    """Close a session, never for longer than `_CLOSE_GRACE`.

    A dead HTTP backend makes leaving the client re-raise its connect error, and a hung
    one would hold a handshake-era session's closing DELETE for the HTTP timeout.
    """
    with anyio.move_on_after(_CLOSE_GRACE, shield=True), contextlib.suppress(Exception):
        await client.close()  # type: ignore[no-untyped-call]
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await client.transport.close()


def _describe(exc: BaseException) -> str:
    """A one-line reason for status output and logs."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return text.splitlines()[0] if text else type(exc).__name__
