"""Per-client backend sessions of one replica (`session = "per_client"`, docs/sessions.md).

On the HTTP front a backend session shared by every client would carry one client's
context (roots, log level, elicitation answers, whatever state the backend keeps per
session) to the others. A per-client server gives each client session of the front a
backend session of its own on the replica that serves it, as a direct connection would:
a stdio backend is one process per client session.

A session is opened on the client's first request to the server, and closed when the
client's session ends (its `Connection`'s exit stack), after `session_idle_timeout`
seconds without a request, or when the replica stops; at most `max_sessions` are open
at once. One whose backend died is opened again on the client's next request (what the
backend kept for the client is lost, as when a server restarts). The catalog and health
probes stay on the replica's own session.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc
import mcp_types
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from mcp.server.connection import Connection
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.era import takes_log_level
from mcp_agg.backend.oauth.team import not_signed_in
from mcp_agg.backend.opener import SessionOpener, session_closed
from mcp_agg.backend.process import OutputCapture
from mcp_agg.backend.relay import ClientRelay
from mcp_agg.backend.transports import RequestHook
from mcp_agg.config import ReplicaSpec
from mcp_agg.core.peer import ClientKey, PerClient, RelayRule
from mcp_agg.errors import SessionsFull, UpstreamConnectError

if TYPE_CHECKING:
    from mcp_agg.core.views import ClientPeer

__all__ = ["HANDSHAKE_SESSION", "ClientSession", "ClientSessions"]

#: The key of a replica's handshake-era session: the one its handshake-era clients share
#: when the replica's own session speaks 2026-07-28 (docs/eras.md). Not a client's, so
#: neither counted in `max_sessions` nor shown as one.
HANDSHAKE_SESSION = "era:handshake"

logger = logging.getLogger(__name__)


class SessionSource(Protocol):
    """What the pool reads of its replica."""

    spec: ReplicaSpec
    connect_timeout: float
    on_http_request: RequestHook | None

    @property
    def id(self) -> str: ...


class ClientSession:
    """One client's backend session on a replica."""

    def __init__(
        self,
        key: ClientKey,
        peer: ClientPeer | None,
        server: str,
        replica: str,
        rule: Callable[[], RelayRule] | None = None,
    ) -> None:
        self.key = key
        #: The client is the session's fixed owner: asked and told at any time (unless
        #: `rule` says who is: the era session's is its replica's own rule).
        self.relay = ClientRelay(replica, rule or (lambda: RelayRule(peer=peer)), server=server)
        self.client: Client[Any] | None = None
        #: Requests on the session now, and when the last one ended (monotonic).
        self.in_flight = 0
        self.last_used = time.monotonic()
        #: Set to close the session (its client left, its backend died, the replica stops).
        self.done = anyio.Event()
        #: Set once opening has ended: `client` is set if it succeeded, `failure` why not.
        self.opened = anyio.Event()
        self.failure: BaseException | None = None

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """While a request is on the session: it is not idle."""
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()


class _UpdateHandler(MessageHandler):
    """A per-client session's notifications: list changes are the replica's own session's
    business (the catalog); a resource update goes to this client only."""

    def __init__(self, on_updated: Callable[[str], Awaitable[None]]) -> None:
        self._on_updated = on_updated

    async def on_resource_updated(self, message: mcp_types.ResourceUpdatedNotification) -> None:
        await self._on_updated(str(message.params.uri))


class ClientSessions:
    """One replica's per-client sessions, by client."""

    def __init__(self, replica: SessionSource) -> None:
        self._replica = replica
        self._sessions: dict[ClientKey, ClientSession] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def __len__(self) -> int:
        """The clients' sessions open (the handshake-era session is not one)."""
        return len(self._sessions) - (HANDSHAKE_SESSION in self._sessions)

    def get(self, key: ClientKey) -> ClientSession | None:
        """`key`'s session, if it has one open."""
        session = self._sessions.get(key)
        return session if session is not None and session.client is not None else None

    def holds(self, key: ClientKey | None) -> bool:
        """Whether `key`'s client has a session here (its requests stick to this replica)."""
        return key is not None and key in self._sessions

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sessions live within this: leaving it closes them all, reaping their processes."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                yield
            finally:
                self._tg = None
                for session in self._sessions.values():
                    session.done.set()

    async def session(self, client: PerClient) -> ClientSession:
        """`client`'s open session, opened now if it has none (or its backend died).

        Raises `SessionsFull` beyond `max_sessions`, `UpstreamConnectError` when opening
        fails (nothing was sent: another replica may take the request).
        """
        session = self._sessions.get(client.key)
        if session is not None and session.client is not None and session_closed(session.client):
            self._drop(session)  # its backend died: a new one for this request
            session = None
        if session is None:
            session = self._start(client)
        await session.opened.wait()
        if session.client is None:  # failed, or the replica stopped while opening it
            missing = not_signed_in(session.failure)
            if missing is not None:
                raise missing  # the caller's to sign in: requests.py hands them a link
            why = session.failure or "the replica stopped"
            raise UpstreamConnectError(
                f"opening a session for a client: {why}", replica=self._replica.id
            ) from session.failure
        return session

    def close(self, key: ClientKey) -> None:
        """The client's session ended: close its backend session."""
        session = self._sessions.get(key)
        if session is not None:
            self._drop(session)

    def _drop(self, session: ClientSession) -> None:
        session.done.set()
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]

    def _start(self, client: PerClient) -> ClientSession:
        replica = self._replica
        server = replica.spec.server
        tg = self._tg
        if tg is None:
            raise UpstreamConnectError("the replica is not running", replica=replica.id)
        if client.key != HANDSHAKE_SESSION and len(self) >= server.max_sessions:
            raise SessionsFull(
                f"server {replica.spec.group!r}: replica {replica.id} already has "
                f"max_sessions ({server.max_sessions}) client sessions open; a new client "
                "gets one when another leaves or is idle for session_idle_timeout "
                f"({server.session_idle_timeout:g}s)"
            )
        key = client.key
        session = ClientSession(key, client.peer, replica.spec.group, replica.id, client.rule)
        self._sessions[key] = session
        if isinstance(key, Connection):
            key.exit_stack.callback(self.close, key)
        tg.start_soon(self._serve, session, client)
        return session

    async def _serve(self, session: ClientSession, owner: PerClient) -> None:
        """Open the session, hold it until it is done or idle, then close it."""
        replica = self._replica
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    session.client = await self._open(stack, session, owner)
                except Exception as exc:
                    session.failure = exc
                    return
                finally:
                    # Idle time counts from now: opening may take longer than the timeout.
                    session.last_used = time.monotonic()
                    session.opened.set()
                logger.info("backend %s: opened a session for a client", replica.id)
                why = await self._hold(session)
                logger.info("backend %s: closing a client's session (%s)", replica.id, why)
        except Exception as exc:  # closing failed: the session is gone all the same
            logger.warning("backend %s: closing a client's session: %s", replica.id, exc)
        finally:
            self._drop(session)

    async def _open(
        self, stack: contextlib.AsyncExitStack, session: ClientSession, owner: PerClient
    ) -> Client[Any]:
        replica = self._replica
        output = OutputCapture(replica.id)
        stack.push_async_callback(output.aclose)

        async def updated(uri: str) -> None:
            if owner.updated is not None:
                with contextlib.suppress(Exception):  # the client went away: its loss
                    await owner.updated(replica.spec.group, uri)

        opener = SessionOpener(
            replica.spec,
            replica.connect_timeout,
            session.relay,
            _UpdateHandler(updated),
            output,
            replica.on_http_request,
            # Its process ended by itself: close the session (the next request opens one).
            lambda _code: session.done.set(),
            legacy=owner.legacy,
            user=owner.user,
        )
        with anyio.fail_after(replica.connect_timeout):
            # A launched HTTP backend's process is the replica's: connect to it.
            client = await opener.open(stack, launch=False)
            if owner.level is not None and takes_log_level(client):
                with contextlib.suppress(MCPError):
                    await client.session.set_logging_level(owner.level)
        return client

    async def _hold(self, session: ClientSession) -> str:
        """Until the session is done, or has had no request for `session_idle_timeout`;
        why it ends."""
        timeout = self._replica.spec.server.session_idle_timeout
        while not session.done.is_set():
            idle = time.monotonic() - session.last_used
            if session.in_flight == 0 and idle >= timeout:
                return f"idle for {idle:.0f}s"
            with anyio.move_on_after(max(timeout - idle, 0.05)):
                await session.done.wait()
        return "its client left, its backend ended, or the replica stops"
