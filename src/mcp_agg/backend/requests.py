"""Requests on a replica's session, and the one classification of how each one failed.

A mixin over `ReplicaCore` (see replica.py): a request counts in the replica's stats,
feeds its latency estimate, and gives up the session when the connection is lost or the
backend no longer knows it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import mcp_types
from fastmcp import Client
from mcp.client._input_required import (
    InputRequiredRoundsExceededError,
    run_input_required_driver,
)
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError
from mcp_types.methods import is_input_required

from mcp_agg.backend.clientsessions import HANDSHAKE_SESSION, ClientSession
from mcp_agg.backend.era import is_modern, takes_log_level, with_log_level
from mcp_agg.backend.oauth.team import SignInRequired, UserNotSignedIn
from mcp_agg.backend.oauth.within import sign_in_within_call
from mcp_agg.backend.opener import session_closed
from mcp_agg.backend.replica import ReplicaCore, ReplicaState, describe
from mcp_agg.backend.transports.sessions import SessionCheck
from mcp_agg.core.caller import current_caller
from mcp_agg.core.peer import PerClient
from mcp_agg.errors import (
    FailureKind,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRequestError,
    UpstreamSessionExpired,
    UpstreamTimeout,
    UpstreamUnavailable,
    classify,
    connection_lost,
)

__all__ = ["RequestsMixin"]


class RequestsMixin(ReplicaCore):
    """What the gateway asks of one replica: calls, reads, prompts, and session state."""

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
            caller = current_caller.get()
            if not is_modern(client):
                return await self._send_raw(client, "tools/call", params)
            params = with_log_level(params, caller.log_level if caller is not None else None)
            if caller is not None and caller.backend_round:
                params.update(caller.backend_round)
            result = await self._send_raw(client, "tools/call", params)
            if is_input_required(result) and (caller is None or caller.handshake):
                # A modern-era client takes the round as it is (the front passes it
                # through); for any other the gateway drives the rounds itself.
                return await self._drive_rounds(client, "tools/call", params, result)
            return result

    async def read_resource(self, uri: str) -> mcp_types.ReadResourceResult:
        """A resources/read; a modern-era backend's input-required rounds are driven by
        FastMCP's client, whose requests reach the calling client through the relay."""
        async with self._request(f"resources/read {uri}") as client:
            return await client.read_resource_mcp(uri, meta=_log_meta(client))

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None
    ) -> mcp_types.GetPromptResult:
        """A prompts/get; its rounds as a read's."""
        async with self._request(f"prompts/get {name}") as client:
            return await client.get_prompt_mcp(name, arguments, meta=_log_meta(client))

    async def complete(self, params: dict[str, Any]) -> dict[str, Any]:
        """A completion/complete, params and result in their wire form."""
        async with self._request("completion/complete") as client:
            return await self._send_raw(client, "completion/complete", params)

    async def set_log_level(self, level: mcp_types.LoggingLevel) -> None:
        """Ask the backend to send log messages from `level` up (kept for reconnects).

        A modern-era backend is asked in each request instead (era.py)."""
        self.log_level = level
        handshake = self._handshake_client()
        if handshake is not None and takes_log_level(handshake):
            # The handshake-era session serves its clients at the replica's level too.
            await handshake.session.set_logging_level(level)
        client = self._client
        if client is None or not takes_log_level(client):
            return
        async with self._request("logging/setLevel") as client:
            await client.session.set_logging_level(level)

    async def subscribe(self, uri: str) -> None:
        if self.listener is not None:
            # The modern era subscribes on the change stream (listen.py).
            self._require_client()
            self.subscriptions.add(uri)
            with anyio.fail_after(self.connect_timeout):
                await self.listener.reopen()
            return
        async with self._request(f"resources/subscribe {uri}") as client:
            await client.session.subscribe_resource(uri)
        if client is self._client:  # restored on a reconnect (a client's own session's: not)
            self.subscriptions.add(uri)

    async def unsubscribe(self, uri: str) -> None:
        self.subscriptions.discard(uri)
        if self.listener is not None:
            with anyio.fail_after(self.connect_timeout):
                await self.listener.reopen()
            return
        async with self._request(f"resources/unsubscribe {uri}") as client:
            await client.session.unsubscribe_resource(uri)

    async def roots_changed(self) -> None:
        """Tell the backend the client's roots changed, if it is connected (the modern
        era has no such notification: a server asks for roots when it needs them)."""
        client = self._client
        if client is not None and self.state is ReplicaState.CONNECTED and not is_modern(client):
            await client.session.send_roots_list_changed()
        handshake = self._handshake_client()
        if handshake is not None:
            await handshake.session.send_roots_list_changed()

    def _handshake_client(self) -> Client[Any] | None:
        """The replica's handshake-era session, if one is open (docs/eras.md)."""
        session = self.clients.get(HANDSHAKE_SESSION)
        return session.client if session is not None else None

    def _require_client(self) -> Client[Any]:
        client = self._client
        if client is None or self.state is not ReplicaState.CONNECTED:
            raise UpstreamUnavailable(f"backend {self.id} is {self.state}", replica=self.id)
        if session_closed(client):
            # The process died or the connection dropped since the last call: nothing
            # has been sent yet, so another replica may take this one.
            self._lose(UpstreamConnectError("connection closed", replica=self.id))
            raise UpstreamUnavailable(f"backend {self.id}: connection closed", replica=self.id)
        return client

    @contextlib.asynccontextmanager
    async def _request(self, what: str) -> AsyncIterator[Client[Any]]:
        """One request on the session: counted, timed, its caller known to the relay, and
        its failure raised as the gateway's error for it (a backend's own JSON-RPC error
        as it is). The session is the replica's own, or the client's own on a per-client
        server (backend/clientsessions.py)."""
        client = self._require_client()
        own = await self._client_session()
        if own is not None:
            assert own.client is not None
            client = own.client
        relay = self._relay if own is None else own.relay
        lose = self._lose if own is None else (lambda _exc: self.clients.close(own.key))
        self.stats.in_flight += 1
        self.stats.calls += 1
        started = time.monotonic()
        try:
            with (
                relay.serving(current_caller.get()),
                self._session_refusal(what, lose),
                contextlib.nullcontext() if own is None else own.using(),
            ):
                yield client
            self.ewma.observe(time.monotonic() - started)
        except anyio.get_cancelled_exc_class():
            # Abandoned (deadline, attempt timeout, client cancel): its latency is at
            # least this long, which is what a balancer should know of a hung replica.
            self.ewma.observe(time.monotonic() - started)
            raise
        except (UpstreamUnavailable, UpstreamSessionExpired) as exc:
            await self._raise_if_signed_out(own, exc)
            raise
        except Exception as exc:
            await self._raise_if_signed_out(own, exc)
            failure = self._failure(what, exc, lose)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            self.stats.in_flight -= 1

    async def _raise_if_signed_out(self, own: ClientSession | None, exc: Exception) -> None:
        """A `per_user` session whose backend refused its user's token mid-session (the
        refresh token revoked, a scope missing): the auth flow forgot the token set and
        the SDK closed the session with only "Connection closed", so the call is
        answered with the user's sign-in link, as when the session would not open."""
        owner = None if own is None or self.front is None else self.front.per_client()
        if owner is None or owner.user is None or not self._per_user():
            return
        if (await owner.user.storage(self.spec).get_tokens()) is not None:
            return
        assert own is not None
        self.clients.close(own.key)
        missing = owner.user.missing(self.spec)
        raise SignInRequired(missing.server, missing.link) from exc

    def _per_user(self) -> bool:
        auth = self.spec.server.auth
        return auth is not None and auth.per_user

    def serves_current_client(self) -> bool:
        """Whether the current request's client has a session of its own here."""
        if self.front is None or self.spec.server.session != "per_client":
            return False
        owner = self.front.per_client()
        return owner is not None and self.clients.holds(owner.key)

    async def _client_session(self) -> ClientSession | None:
        """The session that serves the current request when the replica's own does not
        (opened if need be): the client's own on a per-client server, or the replica's
        handshake-era session for a handshake-era client of an HTTP backend whose own
        session speaks 2026-07-28 (docs/eras.md); None for the replica's own.

        Only an HTTP backend: its sessions share one server, as two clients' would. A
        second session of a stdio backend is a second process, whose state (tools it
        added, counters, subscriptions) the catalog's process would not share."""
        front = self.front
        if front is not None and self.spec.server.session == "per_client":
            owner = front.per_client()
            if owner is not None:
                try:
                    return await self.clients.session(owner)
                except UserNotSignedIn as missing:
                    # The one place a caller without a sign-in is met: signed in within
                    # the call (URL elicitation), else answered with the link.
                    await sign_in_within_call(missing)
                    return await self.clients.session(owner)
        caller = current_caller.get()
        client = self._client
        if (
            caller is None
            or not caller.handshake
            or client is None
            or not is_modern(client)
            or self.spec.server.protocol != "auto"
            or self.spec.server.url is None
        ):
            return None
        return await self.clients.session(self._handshake_owner())

    def _handshake_owner(self) -> PerClient:
        """The replica's handshake-era session, as the pool opens it: asked and told as
        the replica's own session is, its resource updates the replica's own."""

        async def updated(_group: str, uri: str) -> None:
            await self._resource_updated(uri)

        return PerClient(
            HANDSHAKE_SESSION,
            None,
            self.log_level,
            updated,
            legacy=True,
            rule=self._relay.rule,
        )

    @contextlib.contextmanager
    def _session_refusal(
        self, what: str, lose: Callable[[BaseException], None] | None = None
    ) -> Iterator[None]:
        """A request the backend refused for a session it no longer knows is raised as
        `UpstreamSessionExpired`, and the session is given up (`lose`) for a new one:
        the request never reached a tool."""
        check = SessionCheck()
        try:
            with check.watching():
                yield
        except Exception as exc:
            if not check.gone and classify(exc) is not FailureKind.SESSION_EXPIRED:
                raise
            expired = UpstreamSessionExpired(
                f"backend {self.id}: {what}: the backend no longer knows the session "
                f"({describe(exc)}); opening a new one",
                replica=self.id,
            )
            (lose or self._lose)(expired)
            raise expired from exc

    def _failure(
        self, what: str, exc: Exception, lose: Callable[[BaseException], None]
    ) -> Exception:
        """The error a request's failure is raised as (`exc` itself for the backend's own
        answer); a failure counts against the replica, a lost connection loses it."""
        if isinstance(exc, MCPError) and not connection_lost(exc):
            return exc  # the backend's own JSON-RPC error: relayed as it is
        self.stats.failures += 1
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"backend {self.id}: {what}: timed out", replica=self.id)
        if connection_lost(exc):
            lose(exc)
        # Keep the one classification: a failure to connect sent nothing.
        error: type[UpstreamError] = (
            UpstreamConnectError if classify(exc) is FailureKind.NOT_SENT else UpstreamRequestError
        )
        return error(f"backend {self.id}: {what}: {describe(exc)}", replica=self.id)

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
        meta = data["params"].get("_meta")
        if caller is not None and isinstance(meta, dict):
            # A modern-era backend reads the client's capabilities in each request's
            # `_meta`. The stamp writes the gateway's, which declare all it can relay;
            # the calling client's are what the backend would see directly, so it never
            # asks a client for what that client cannot give.
            capabilities = caller.capabilities
            if capabilities is not None and mcp_types.CLIENT_CAPABILITIES_META_KEY in meta:
                meta[mcp_types.CLIENT_CAPABILITIES_META_KEY] = capabilities
        if caller is not None and caller.progress:
            options["on_progress"] = caller.report_progress
        request = session._dispatcher.send_raw_request(method, data["params"], options)
        if self.spec.server.url is None:
            return await request
        # An HTTP error is raised in the session's task, not in the caller's: watch it.
        return await client._await_with_session_monitoring(request)

    async def _drive_rounds(
        self,
        client: Client[Any],
        method: str,
        params: dict[str, Any],
        first: dict[str, Any],
    ) -> dict[str, Any]:
        """A modern-era backend's input-required rounds, driven by the gateway for a
        client that cannot take them: each request goes to the calling client through
        the relay (as a server-to-client request on its handshake-era session), and the
        request is sent again with the answers and the backend's state."""
        session = client.session

        async def dispatch(
            key: str, request: mcp_types.InputRequest
        ) -> mcp_types.InputResponse | mcp_types.ErrorData:
            meta = request.params.meta if request.params is not None else None
            ctx = ClientRequestContext(session=session, request_id=key, meta=meta)
            return await session.dispatch_input_request(ctx, request)

        async def retry(
            responses: mcp_types.InputResponses | None, state: str | None
        ) -> dict[str, Any] | mcp_types.InputRequiredResult:
            again = {k: v for k, v in params.items() if k not in _ROUND_KEYS}
            if responses is not None:
                again["inputResponses"] = {
                    key: answer.model_dump(by_alias=True, mode="json", exclude_none=True)
                    for key, answer in responses.items()
                }
            if state is not None:
                again["requestState"] = state
            result = await self._send_raw(client, method, again)
            if is_input_required(result):
                return mcp_types.InputRequiredResult.model_validate(result, by_name=False)
            return result

        round_one = mcp_types.InputRequiredResult.model_validate(first, by_name=False)
        try:
            return await run_input_required_driver(round_one, dispatch=dispatch, retry=retry)
        except InputRequiredRoundsExceededError as exc:
            raise MCPError(mcp_types.INTERNAL_ERROR, str(exc)) from exc


def _log_meta(client: Client[Any]) -> dict[str, Any] | None:
    """The `_meta` asking a modern-era backend for the calling client's log messages."""
    caller = current_caller.get()
    if caller is None or caller.log_level is None or not is_modern(client):
        return None
    return {mcp_types.LOG_LEVEL_META_KEY: caller.log_level}


#: What a request carries for one input-required round only.
_ROUND_KEYS = frozenset({"inputResponses", "requestState"})
