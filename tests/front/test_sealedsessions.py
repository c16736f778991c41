"""Tests for sealed sessions on the HTTP front (`mcp_agg.front.sealedsessions`).

Two in-process "replicas" (two FastMCP apps, as the gateway builds its HTTP front, each
with its own SDK session manager) share a secret and a store. These pin the private SDK
pieces the manager relies on: an SDK upgrade that moves them fails here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
from fastmcp import FastMCP
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.connection import Connection
from starlette.types import Receive, Scope, Send

from mcp_agg.errors import StoreUnavailable
from mcp_agg.front.bodylimit import session_manager
from mcp_agg.front.sealedsessions import Resumption, SealedSessionManager, seal_sessions
from mcp_agg.security.sessionids import SessionSealer
from mcp_agg.store import MemoryStore
from tests.e2e.procs import ACCEPT, INITIALIZED, initialize_request, session_headers

SECRET = "in-process-replicas-share-this-secret!"


@dataclass
class Replicas:
    """Clients of the replicas, each request as `user` (None: no credential)."""

    clients: list[httpx.AsyncClient]
    managers: list[SealedSessionManager]
    tracked: list[Connection] = field(default_factory=list)

    async def post(
        self, replica: int, session_id: str | None, message: dict[str, Any], user: str = "alice"
    ) -> httpx.Response:
        headers = session_headers(session_id) if session_id else {"Accept": ACCEPT}
        return await self.clients[replica].post(
            "/mcp", json=message, headers={**headers, "X-User": user}
        )

    async def open(self, replica: int, user: str = "alice") -> str:
        response = await self.post(replica, None, initialize_request("pinned"), user)
        assert response.status_code == 200, response.text
        session_id = response.headers["mcp-session-id"]
        assert (await self.post(replica, session_id, INITIALIZED, user)).status_code == 202
        return session_id

    async def call(self, replica: int, session_id: str, user: str = "alice") -> httpx.Response:
        call = {"name": "double", "arguments": {"n": 21}}
        request = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}
        return await self.post(replica, session_id, request, user)


def as_user(app: Any) -> Any:
    """`app` with the caller taken from `X-User` as an authenticated user, as FastMCP's
    auth middleware sets it on a front with `[gateway.auth]`."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        user = dict(scope.get("headers", [])).get(b"x-user", b"").decode()
        if user:
            scope["user"] = AuthenticatedUser(AccessToken(token=user, client_id=user, scopes=[]))
        await app(scope, receive, send)

    return wrapped


class FlakyStore(MemoryStore):
    """The shared store, unreachable while `down`."""

    down = False

    async def revoke(self, key: str, ttl: float) -> bool:
        if self.down:
            raise StoreUnavailable("connection refused")
        return await super().revoke(key, ttl)

    async def is_revoked(self, key: str) -> bool:
        if self.down:
            raise StoreUnavailable("connection refused")
        return await super().is_revoked(key)


@contextlib.asynccontextmanager
async def running(
    store: MemoryStore | None = None, store_failure: Literal["open", "closed"] = "open"
) -> AsyncIterator[Replicas]:
    """Two replicas sharing `store`, started and stopped in the test's own task (their
    lifespans hold task groups, which a fixture would exit from another task)."""
    shared = store if store is not None else MemoryStore()
    tracked: list[Connection] = []
    resumption = Resumption(SessionSealer(SECRET), lambda: shared, store_failure, tracked.append)
    async with contextlib.AsyncExitStack() as stack:
        clients, managers = [], []
        for _ in range(2):
            server: FastMCP[Any] = FastMCP("replica")

            @server.tool
            def double(n: int) -> int:
                return 2 * n

            app = server.http_app(transport="http")
            seal_sessions(app, resumption)
            await stack.enter_async_context(app.router.lifespan_context(app))
            manager = session_manager(app)
            assert isinstance(manager, SealedSessionManager)
            managers.append(manager)
            transport = httpx.ASGITransport(app=as_user(app))
            client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")
            clients.append(await stack.enter_async_context(client))
        yield Replicas(clients, managers, tracked)


async def test_a_session_opened_on_one_replica_is_served_by_another() -> None:
    async with running() as replicas:
        session_id = await replicas.open(0)
        ticket = SessionSealer(SECRET).open(session_id)
        assert ticket is not None
        assert ticket.client_params["clientInfo"]["name"] == "pinned"
        assert ticket.owner == ("alice", None, None)
        response = await replicas.call(1, session_id)
        assert response.status_code == 200, response.text
        assert '"text":"42"' in response.text
        # Resumed as `initialize` left it, and tracked for list_changed announcements.
        assert session_id in replicas.managers[1]._server_instances
        [connection] = replicas.tracked
        assert connection.session_id == session_id
        assert connection.client_params is not None
        assert connection.client_params.client_info.name == "pinned"
        assert connection.initialized.is_set()


async def test_a_session_is_resumed_again_once_the_replica_dropped_it() -> None:
    async with running() as replicas:
        session_id = await replicas.open(0)
        held = replicas.managers[0]._server_instances[session_id]
        await replicas.managers[0]._discard_session(session_id, held)  # as an idle timeout does
        assert (await replicas.call(0, session_id)).status_code == 200


@pytest.mark.parametrize("replica", [0, 1])
async def test_another_credential_gets_404(replica: int) -> None:
    async with running() as replicas:
        session_id = await replicas.open(0)
        assert (await replicas.call(replica, session_id, user="mallory")).status_code == 404
        assert (await replicas.call(replica, session_id)).status_code == 200  # not ended by it


async def test_a_deleted_session_is_refused_by_every_replica_sharing_the_store() -> None:
    async with running() as replicas:
        session_id = await replicas.open(0)
        assert (await replicas.call(1, session_id)).status_code == 200  # both hold it now
        headers = {**session_headers(session_id), "X-User": "alice"}
        assert (await replicas.clients[1].delete("/mcp", headers=headers)).status_code == 200
        for replica in (0, 1):
            response = await replicas.call(replica, session_id)
            assert response.status_code == 404, response.text
            assert session_id not in replicas.managers[replica]._server_instances


async def test_a_non_initialize_opening_request_is_refused_as_before() -> None:
    async with running() as replicas:
        request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        response = await replicas.post(0, None, request)
        assert response.status_code == 400
        assert not replicas.managers[0]._server_instances


async def test_while_the_store_is_down_a_delete_is_refused_where_it_was_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    async with running(store) as replicas:
        session_id = await replicas.open(0)
        store.down = True
        headers = {**session_headers(session_id), "X-User": "alice"}
        assert (await replicas.clients[1].delete("/mcp", headers=headers)).status_code == 200
        assert (await replicas.call(1, session_id)).status_code == 404
        # store_failure = "open": the other replica, which cannot know, serves it.
        assert (await replicas.call(0, session_id)).status_code == 200
        assert "other replicas do not know it was deleted" in caplog.text
        assert "session revocations cannot be checked" in caplog.text
        store.down = False
        assert (await replicas.call(0, session_id)).status_code == 200
        assert "session revocations are checked again" in caplog.text


async def test_while_the_store_is_down_closed_refuses_sealed_sessions() -> None:
    store = FlakyStore()
    async with running(store, "closed") as replicas:
        session_id = await replicas.open(0)
        store.down = True
        assert (await replicas.call(1, session_id)).status_code == 404
        store.down = False
        assert (await replicas.call(1, session_id)).status_code == 200


async def test_the_session_limit_holds_for_sealed_sessions_opened_and_resumed() -> None:
    async with running() as replicas:
        first = await replicas.open(0)
        for manager in replicas.managers:
            manager.max_sessions = 1
        # Replica 0 holds one session: a new one is refused, as the SDK refuses its own.
        refused = await replicas.post(0, None, initialize_request("second"))
        assert refused.status_code == 503, refused.text
        # Replica 1 resumes the first session, then holds one: resuming another is refused.
        assert (await replicas.call(1, first)).status_code == 200
        for manager in replicas.managers:
            manager.max_sessions = 2
        second = await replicas.open(0)
        replicas.managers[1].max_sessions = 1
        assert (await replicas.call(1, second)).status_code == 503
        assert second not in replicas.managers[1]._server_instances
