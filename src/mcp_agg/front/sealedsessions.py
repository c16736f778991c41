"""Handshake-era sessions any replica can serve (`[gateway] session_secret`).

The MCP SDK's session manager keeps each session in the process that answered its
`initialize`, under a random id: behind a round-robin balancer the next request lands on
another replica and gets 404. With a `session_secret`, `SealedSessionManager` takes over
FastMCP's manager (`seal_sessions`) and changes three things, leaving the rest (the
transports, streams, idle timeout, the session limit) to the SDK:

- the id handed out on `initialize` is sealed (`mcp_agg.security.sessionids`): it
  carries the initialize params, the negotiated version and the caller's credential;
- a request with a sealed id this replica does not hold (it never saw the session, or
  its copy idled out) is opened: valid, not revoked, same credential → the session is
  re-created under the same id, already initialized, and serves the request as if it
  had been here all along. Anything else is left to the SDK, which answers 404
  "Session not found" as for any unknown session;
- DELETE revokes the id in the shared store (a digest of it, for `MAX_AGE`), which every
  replica checks on every request, so a session ended on one replica ends on all.

Private SDK pieces touched, each because the SDK has no public seam for it (and pinned
by tests/front/test_sealedsessions.py, so an SDK upgrade that moves them fails there):
`_handle_stateful_request` (to open sealed ids before the SDK looks the id up),
`_admit_session` (the SDK mints `uuid4().hex` there, before the body is read),
`_server_instances`, `_session_owners`, `_session_creation_lock`, `_task_group`,
`_lifespan_state` and `_discard_session` (to register a resumed session as the SDK
registers its own), and `ServerRunner._negotiate_initialize` (so the version sealed is
the version the SDK negotiates).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
from anyio.abc import TaskStatus
from fastmcp.server.http import FastMCPStreamableHTTPSessionManager
from mcp.server.auth.middleware.bearer_auth import (
    AuthenticatedUser,
    AuthorizationContext,
    authorization_context,
)
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, serve_connection
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.transport_context import TransportContext
from mcp_types import InitializeRequestParams
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from mcp_agg.errors import StoreUnavailable
from mcp_agg.front.bodylimit import read_body, session_manager
from mcp_agg.security.sessionids import (
    MAX_AGE,
    Owner,
    SessionSealer,
    Ticket,
    fingerprint,
    revocation_key,
)

if TYPE_CHECKING:
    from mcp_agg.core.gateway import Gateway
    from mcp_agg.store import Store

__all__ = ["Resumption", "SealedSessionManager", "seal_sessions"]

logger = logging.getLogger(__name__)

#: Most revocations a replica remembers itself (beside the store's).
_REVOKED_HERE = 100_000
#: The sealed id for the session the current opening request may create (set while the
#: SDK admits it: `_admit_session` has no parameter for it).
_minted: contextvars.ContextVar[str | None] = contextvars.ContextVar("minted", default=None)


@dataclass(frozen=True, slots=True)
class Resumption:
    """What sealed sessions need of the gateway."""

    sealer: SessionSealer
    #: The shared store (looked up per use: the gateway may replace it while starting).
    store: Callable[[], Store]
    #: `[gateway.store] store_failure`: whether a session is served while the store
    #: cannot say if it was revoked.
    store_failure: Literal["open", "closed"]
    #: Called with each resumed connection (the gateway tracks initialized connections
    #: to announce catalog changes to them; a resumed one never initializes here).
    track: Callable[[Connection], None]

    @classmethod
    def of(cls, gateway: Gateway) -> Resumption | None:
        """The gateway's, or None without `session_secret` (sessions stay per process)."""
        settings = gateway.config.gateway
        if settings.session_secret is None:
            return None
        return cls(
            sealer=SessionSealer(settings.session_secret),
            store=lambda: gateway.store,
            store_failure=settings.store.store_failure if settings.store else "open",
            track=gateway.announcer.track,
        )


def seal_sessions(app: Starlette, resumption: Resumption) -> None:
    """Make the session manager of FastMCP's `app` a `SealedSessionManager`.

    FastMCP builds its manager (with its settings: JSON responses, stateless mode, idle
    timeout) and enters its `run()` in the app's lifespan; there is no seam to build
    another in its place. So the manager it made is given this subclass's behaviour
    right after, before uvicorn accepts a connection: the subclass adds methods and the
    `resumption` attribute, nothing that `__init__` would have had to set up.
    """
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(instance: Any) -> AsyncIterator[Any]:
        async with started(instance) as state:
            manager = session_manager(app)
            if not isinstance(manager, FastMCPStreamableHTTPSessionManager):
                raise RuntimeError("session_secret: FastMCP's session manager was not found")
            SealedSessionManager.take_over(manager, resumption)
            yield state

    app.router.lifespan_context = lifespan


class SealedSessionManager(FastMCPStreamableHTTPSessionManager):
    """FastMCP's session manager, with sealed ids resumed on any replica (module
    docstring)."""

    resumption: Resumption
    #: Ids revoked through this replica (revocation key -> when it lapses, monotonic):
    #: refused here even while the store cannot be reached.
    revoked_here: dict[str, float]
    _store_down: bool

    @classmethod
    def take_over(
        cls, manager: FastMCPStreamableHTTPSessionManager, resumption: Resumption
    ) -> SealedSessionManager:
        manager.__class__ = cls
        assert isinstance(manager, cls)
        manager.resumption = resumption
        manager.revoked_here = {}
        manager._store_down = False
        return manager

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = Headers(scope=scope).get(MCP_SESSION_ID_HEADER)
        requestor = _requestor(scope)
        if session_id is None:
            if scope["method"] == "POST":
                await self._open_session(scope, receive, send, requestor)
            else:
                await super()._handle_stateful_request(scope, receive, send)
            return
        ticket = self.resumption.sealer.open(session_id)
        refused = ticket is None or await self._revoked(session_id)
        if refused:
            # Expired or revoked elsewhere: this replica's copy ends too (never on a
            # mere credential mismatch, which must not let one caller end another's).
            held = self._server_instances.get(session_id)
            if held is not None:
                await self._discard_session(session_id, held)
        elif ticket is not None and ticket.owner == _owner(requestor):
            if scope["method"] == "DELETE":
                await self._revoke(session_id)
            if not await self._resume(session_id, ticket, requestor):
                logger.warning("Refusing to resume a session: %d are open", self.max_sessions)
                await _too_many(scope, receive, send)
                return
        else:
            logger.info("Refused a sealed session id presented with another credential")
        await super()._handle_stateful_request(scope, receive, send)

    async def _open_session(
        self, scope: Scope, receive: Receive, send: Send, requestor: AuthorizationContext | None
    ) -> None:
        """A request without a session id: if it is `initialize`, the session it opens
        gets a sealed id (the SDK admits it, `_admit_session`)."""
        body, receive = await read_body(receive)
        session_id = self._mint(body, requestor)
        token = _minted.set(session_id)
        try:
            await super()._handle_stateful_request(scope, receive, send)
        finally:
            _minted.reset(token)

    def _mint(self, body: bytes, requestor: AuthorizationContext | None) -> str | None:
        """The sealed id for an `initialize` request's session; None for anything else
        (the SDK refuses such an opening request, and the session it admitted with it)."""
        try:
            message = json.loads(body)
            if not isinstance(message, dict) or message.get("method") != "initialize":
                return None
            params = message.get("params")
            if not isinstance(params, dict):
                return None
            # The SDK's own negotiation, so the version sealed is the one it commits.
            _, negotiated = ServerRunner._negotiate_initialize(params)
        except (ValueError, ValidationError):
            return None
        return self.resumption.sealer.seal(Ticket(params, negotiated, _owner(requestor)))

    def _admit_session(
        self, requestor: AuthorizationContext | None
    ) -> StreamableHTTPServerTransport | None:
        # The SDK's, with the sealed id in place of its uuid.
        session_id = _minted.get()
        if session_id is None:
            return super()._admit_session(requestor)
        transport = self._register(session_id, requestor)
        if transport is not None:
            logger.info("Opened sealed session %s", fingerprint(session_id))
        return transport

    def _register(
        self, session_id: str, requestor: AuthorizationContext | None
    ) -> StreamableHTTPServerTransport | None:
        """A transport for `session_id`, tracked as the SDK tracks its own; None at the
        session limit (`max_sessions`), as the SDK's admission."""
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=self.json_response,
            event_store=self.event_store,
            security_settings=self.security_settings,
            retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout,
        )
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        return transport

    async def _resume(
        self, session_id: str, ticket: Ticket, requestor: AuthorizationContext | None
    ) -> bool:
        """Hold the session `ticket` describes (already held: nothing to do); False at
        the session limit."""
        try:
            params = InitializeRequestParams.model_validate(ticket.client_params, by_name=False)
        except ValidationError:  # sealed by us after the same check: cannot happen
            return True  # left to the SDK: an unknown session
        async with self._session_creation_lock:
            if session_id in self._server_instances:
                return True
            transport = self._register(session_id, requestor)
            if transport is None:
                return False
        assert self._task_group is not None
        await self._task_group.start(self._serve_resumed, session_id, transport, params, ticket)
        logger.info("Resumed sealed session %s", fingerprint(session_id))
        return True

    async def _serve_resumed(
        self,
        session_id: str,
        transport: StreamableHTTPServerTransport,
        params: InitializeRequestParams,
        ticket: Ticket,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """The SDK's session task (`_serve_opening_request`'s `run_server`), with the
        connection restored as `initialize` left it instead of waiting for one."""
        async with transport.connect() as (read_stream, write_stream):
            task_status.started()
            try:
                idle_scope = transport.idle_scope or anyio.CancelScope()
                with idle_scope:
                    dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                        read_stream, write_stream, inline_methods=frozenset({"initialize"})
                    )
                    connection = Connection.for_loop(
                        dispatcher,
                        session_id=session_id,
                        protocol_version_hint=ticket.protocol_version,
                    )
                    connection.client_params = params
                    connection.initialized.set()
                    self.resumption.track(connection)
                    await serve_connection(
                        self.app,
                        dispatcher,
                        connection=connection,
                        lifespan_state=self._lifespan_state,
                    )
                if idle_scope.cancelled_caught:
                    logger.info("Resumed session %s idle timeout", fingerprint(session_id))
            except Exception:
                logger.exception("Resumed session %s crashed", fingerprint(session_id))
            finally:
                await self._discard_session(session_id, transport)

    async def _revoked(self, session_id: str) -> bool:
        key = revocation_key(session_id)
        lapses = self.revoked_here.get(key)
        if lapses is not None and lapses > time.monotonic():
            return True
        try:
            revoked = await self.resumption.store().is_revoked(key)
        except StoreUnavailable as exc:
            if not self._store_down:
                logger.warning(
                    "session revocations cannot be checked (store unavailable: %s): "
                    "sessions %s until it answers",
                    exc,
                    "are served" if self.resumption.store_failure == "open" else "are refused",
                )
            self._store_down = True
            return self.resumption.store_failure == "closed"
        if self._store_down:
            logger.warning("session revocations are checked again: the store answers")
            self._store_down = False
        return revoked

    async def _revoke(self, session_id: str) -> None:
        key = revocation_key(session_id)
        now = time.monotonic()
        kept = [(k, t) for k, t in self.revoked_here.items() if t > now]
        self.revoked_here = dict(kept[-_REVOKED_HERE + 1 :])  # the oldest go first
        self.revoked_here[key] = now + MAX_AGE
        try:
            await self.resumption.store().revoke(key, MAX_AGE)
        except StoreUnavailable as exc:
            logger.warning(
                "a deleted session is refused on this replica only: the store is "
                "unavailable (%s), so other replicas do not know it was deleted",
                exc,
            )


def _requestor(scope: Scope) -> AuthorizationContext | None:
    """Who makes the request, as the SDK compares it against a session's owner."""
    user = scope.get("user")
    return authorization_context(user) if isinstance(user, AuthenticatedUser) else None


def _owner(requestor: AuthorizationContext | None) -> Owner | None:
    if requestor is None:
        return None
    return (requestor["client_id"], requestor["issuer"], requestor["subject"])


async def _too_many(scope: Scope, receive: Receive, send: Send) -> None:
    """The SDK's answer at its session limit."""
    error = {"code": -32603, "message": "Too many open sessions"}
    response = JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=503)
    await response(scope, receive, send)
