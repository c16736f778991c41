"""Tests for mcp_agg.core.caller and the routing rule of a replica's relay (backend/relay.py):
which client a backend's log message or server-to-client request belongs to, and what a
client gets to see."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mcp_types
import pytest
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.upstream import Upstream
from mcp_agg.config import ReplicaSpec, config_from_raw
from mcp_agg.core.caller import Caller, LogLevels, log_rank

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


class _NoOutbound:
    """A connection's standalone channel; these tests never send on it."""

    async def send_raw_request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is sent on the standalone channel")

    async def notify(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing is sent on the standalone channel")


#: What a client that takes every request a backend may send declares.
EVERY_CAPABILITY = mcp_types.ClientCapabilities(
    roots=mcp_types.RootsCapability(),
    sampling=mcp_types.SamplingCapability(),
    elicitation=mcp_types.ElicitationCapability(),
)


def connection(
    version: str = HANDSHAKE, capabilities: mcp_types.ClientCapabilities | None = EVERY_CAPABILITY
) -> Connection:
    made = Connection(_NoOutbound(), protocol_version=version)  # type: ignore[arg-type]
    made.client_capabilities = capabilities
    return made


@dataclass
class FakeSession:
    """The parts of a ServerSession a Caller uses; records what it is asked to send."""

    _connection: Connection | None = None
    can_send_request: bool = True
    notifications: list[tuple[Any, Any]] = field(default_factory=list)
    requests: list[tuple[Any, Any, Any]] = field(default_factory=list)
    answer: Any = None

    async def send_notification(self, notification: Any, related_request_id: Any = None) -> None:
        self.notifications.append((notification, related_request_id))

    async def send_request(self, request: Any, result_type: Any, metadata: Any = None) -> Any:
        self.requests.append((request, result_type, metadata))
        return self.answer


def context(
    session: FakeSession,
    *,
    version: str = HANDSHAKE,
    meta: dict[str, Any] | None = None,
    request_id: int = 7,
) -> ServerRequestContext[Any, Any]:
    params: dict[str, Any] = {"name": "tool", "arguments": {}}
    if meta is not None:
        params["_meta"] = meta
    return ServerRequestContext(
        session=session,  # type: ignore[arg-type]
        lifespan_context={},
        protocol_version=version,
        method="tools/call",
        params=params,
        request_id=request_id,
    )


def caller(
    conn: Connection | None = None,
    *,
    version: str = HANDSHAKE,
    meta: dict[str, Any] | None = None,
    levels: LogLevels | None = None,
) -> tuple[Caller, FakeSession]:
    session = FakeSession(_connection=conn)
    return Caller.of(context(session, version=version, meta=meta), levels or LogLevels()), session


def log_params(level: str) -> mcp_types.LoggingMessageNotificationParams:
    return mcp_types.LoggingMessageNotificationParams(level=level, data=f"{level} line")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- log_rank


def test_log_rank_orders_levels_by_severity() -> None:
    ranks = [log_rank(level) for level in LEVELS]
    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(LEVELS)
    assert log_rank("debug") < log_rank("info") < log_rank("warning") < log_rank("emergency")


@pytest.mark.parametrize("level", [None, "", "verbose", "WARNING"])
def test_unknown_log_level_ranks_as_debug(level: str | None) -> None:
    assert log_rank(level) == log_rank("debug")


# ---------------------------------------------------------------------------- LogLevels


async def test_log_levels_set_get_and_most_verbose() -> None:
    levels = LogLevels()
    a, b = connection(), connection()
    assert levels.get(a) is None
    assert levels.get(None) is None
    assert levels.most_verbose() is None
    levels.set(a, "warning")
    assert levels.get(a) == "warning"
    assert levels.get(b) is None
    assert levels.most_verbose() == "warning"
    levels.set(b, "info")
    assert levels.most_verbose() == "info"
    levels.set(a, "debug")  # a connection asks again: its new level replaces the old
    assert levels.get(a) == "debug"
    assert levels.most_verbose() == "debug"
    levels.set(a, "error")
    assert levels.most_verbose() == "info"


async def test_a_closed_connection_is_forgotten() -> None:
    levels = LogLevels()
    a, b = connection(), connection()
    levels.set(a, "debug")
    levels.set(a, "debug")  # set twice: still one entry, forgotten once
    levels.set(b, "error")
    assert levels.most_verbose() == "debug"
    await a.exit_stack.aclose()
    assert levels.get(a) is None
    assert levels.most_verbose() == "error"
    await b.exit_stack.aclose()
    assert levels.most_verbose() is None


# ---------------------------------------------------------------------------- Caller.of


async def test_handshake_caller_without_set_level_gets_every_level() -> None:
    relayed, _ = caller(connection())
    assert relayed.log_level == "debug"
    assert relayed.handshake


async def test_handshake_caller_gets_its_connections_set_level() -> None:
    levels = LogLevels()
    mine, other = connection(), connection()
    levels.set(mine, "warning")
    levels.set(other, "debug")
    relayed, _ = caller(mine, levels=levels)
    assert relayed.log_level == "warning"
    # Another connection's level is not this one's.
    unrelated, _ = caller(connection(), levels=levels)
    assert unrelated.log_level == "debug"


async def test_modern_caller_gets_the_level_its_request_asks_for() -> None:
    relayed, _ = caller(
        connection(MODERN), version=MODERN, meta={mcp_types.LOG_LEVEL_META_KEY: "info"}
    )
    assert relayed.log_level == "info"
    assert not relayed.handshake


async def test_modern_caller_without_a_log_level_gets_no_logs() -> None:
    relayed, _ = caller(connection(MODERN), version=MODERN)
    assert relayed.log_level is None
    relayed, _ = caller(connection(MODERN), version=MODERN, meta={"progressToken": 1})
    assert relayed.log_level is None


@pytest.mark.parametrize(
    ("meta", "progress"),
    [
        (None, False),
        ({}, False),
        ({mcp_types.LOG_LEVEL_META_KEY: "info"}, False),
        ({"progressToken": "tok"}, True),
        ({"progressToken": 0}, True),
    ],
)
@pytest.mark.parametrize("version", [HANDSHAKE, MODERN])
async def test_progress_only_with_a_progress_token(
    meta: dict[str, Any] | None, progress: bool, version: str
) -> None:
    relayed, _ = caller(connection(version), version=version, meta=meta)
    assert relayed.progress is progress


async def test_caller_knows_its_connection() -> None:
    conn = connection()
    relayed, _ = caller(conn)
    assert relayed.connection is conn
    stray, _ = caller(None)
    assert stray.connection is None


# ---------------------------------------------------------------------------- Caller.log


async def test_log_drops_messages_below_the_floor_and_sends_the_rest() -> None:
    levels = LogLevels()
    conn = connection()
    levels.set(conn, "warning")
    relayed, session = caller(conn, levels=levels)
    for level in LEVELS:
        await relayed.log(log_params(level))
    sent = [n.params.level for n, _ in session.notifications]
    assert sent == ["warning", "error", "critical", "alert", "emergency"]
    for notification, related in session.notifications:
        assert isinstance(notification, mcp_types.LoggingMessageNotification)
        assert related == 7  # on the call's own channel


async def test_log_sends_nothing_without_a_floor() -> None:
    relayed, session = caller(connection(MODERN), version=MODERN)
    for level in LEVELS:
        await relayed.log(log_params(level))
    assert session.notifications == []


async def test_modern_log_floor_applies() -> None:
    relayed, session = caller(
        connection(MODERN), version=MODERN, meta={mcp_types.LOG_LEVEL_META_KEY: "info"}
    )
    for level in ["debug", "info", "notice"]:
        await relayed.log(log_params(level))
    assert [n.params.level for n, _ in session.notifications] == ["info", "notice"]


# ---------------------------------------------------------------------------- Caller.request


def elicit_request() -> mcp_types.ElicitRequest:
    return mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestFormParams(
            message="which?", requested_schema={"type": "object", "properties": {}}
        )
    )


async def test_request_on_a_modern_caller_fails_with_the_reason() -> None:
    relayed, session = caller(connection(MODERN), version=MODERN)
    with pytest.raises(MCPError) as info:
        await relayed.request(elicit_request(), mcp_types.ElicitResult, "elicitation/create")
    assert info.value.error.code == mcp_types.INVALID_REQUEST
    assert "has no server-to-client requests" in info.value.error.message
    assert MODERN in info.value.error.message
    assert session.requests == []


async def test_request_on_a_connection_that_cannot_take_requests_fails() -> None:
    relayed, session = caller(connection())
    session.can_send_request = False
    with pytest.raises(MCPError) as info:
        await relayed.request(elicit_request(), mcp_types.ElicitResult, "elicitation/create")
    assert "cannot take server requests" in info.value.error.message
    assert session.requests == []


async def test_request_on_a_handshake_caller_goes_on_the_calls_channel() -> None:
    relayed, session = caller(connection())
    session.answer = mcp_types.ElicitResult(action="decline")
    request = elicit_request()
    got = await relayed.request(request, mcp_types.ElicitResult, "elicitation/create")
    assert got == session.answer
    [(sent, result_type, metadata)] = session.requests
    assert sent is request
    assert result_type is mcp_types.ElicitResult
    assert metadata.related_request_id == 7


# ---------------------------------------------------------------------------- ClientRelay.owner


@pytest.fixture
def spec() -> ReplicaSpec:
    config = config_from_raw({"servers": [{"name": "ps", "command": "python"}]}, None, {})
    return config.replica_specs()[0]


async def test_owner_with_no_calls_in_flight_is_nobody(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    assert upstream._relay.owner() is None


async def test_owner_of_one_call_is_its_caller(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    only, _ = caller(connection())
    upstream._relay.callers.append(only)
    assert upstream._relay.owner() is only


async def test_owner_of_one_connections_calls_is_the_newest(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    conn = connection()
    calls = [caller(conn)[0] for _ in range(3)]
    upstream._relay.callers.extend(calls)
    assert upstream._relay.owner() is calls[-1]
    upstream._relay.callers.remove(calls[-1])
    assert upstream._relay.owner() is calls[1]


async def test_owner_of_two_connections_calls_is_nobody(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    a, b = connection(), connection()
    first, _ = caller(a)
    second, _ = caller(b)
    upstream._relay.callers.extend([first, second])
    assert upstream._relay.owner() is None
    # Whichever came first: the order does not make either the owner.
    upstream._relay.callers.reverse()
    assert upstream._relay.owner() is None
    upstream._relay.callers.append(caller(a)[0])
    assert upstream._relay.owner() is None
    # Once only one client's calls are left, its newest owns what comes.
    upstream._relay.callers.remove(second)
    assert upstream._relay.owner() is upstream._relay.callers[-1]


async def test_owner_without_connections_is_not_guessed(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    stray, _ = caller(None)
    upstream._relay.callers.append(stray)
    assert upstream._relay.owner() is stray  # one call: it is the only candidate
    upstream._relay.callers.append(caller(None)[0])
    assert upstream._relay.owner() is None  # two calls of unknown origin: not the same client
    upstream._relay.callers[:] = [caller(connection())[0], stray]
    assert upstream._relay.owner() is None


# ---------------------------------------------------------------------------- ClientRelay.request


async def test_relay_request_without_calls_says_none_in_flight(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    error = await upstream._relay.request(elicit_request(), mcp_types.ElicitResult)
    assert isinstance(error, mcp_types.ErrorData)
    assert error.code == mcp_types.INVALID_REQUEST
    assert "cannot tell which client to ask" in error.message
    assert "no client call is in flight" in error.message
    assert "elicitation/create" in error.message
    assert spec.id in error.message


async def test_relay_request_with_several_clients_asks_none(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    (first, first_session), (second, second_session) = caller(connection()), caller(connection())
    upstream._relay.callers.extend([first, second])
    error = await upstream._relay.request(elicit_request(), mcp_types.ElicitResult)
    assert isinstance(error, mcp_types.ErrorData)
    assert "cannot tell which client to ask" in error.message
    assert "calls of several clients are in flight" in error.message
    assert first_session.requests == []
    assert second_session.requests == []


async def test_relay_request_goes_to_the_owner(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    conn = connection()
    (older, older_session), (newer, newer_session) = caller(conn), caller(conn)
    newer_session.answer = mcp_types.ElicitResult(action="accept", content={"v": "x"})
    upstream._relay.callers.extend([older, newer])
    got = await upstream._relay.request(elicit_request(), mcp_types.ElicitResult)
    assert got == newer_session.answer
    assert older_session.requests == []
    assert len(newer_session.requests) == 1


async def test_relay_request_to_a_modern_owner_is_the_era_error(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    modern, session = caller(connection(MODERN), version=MODERN)
    upstream._relay.callers.append(modern)
    error = await upstream._relay.request(mcp_types.ListRootsRequest(), mcp_types.ListRootsResult)
    assert isinstance(error, mcp_types.ErrorData)
    assert "roots/list" in error.message
    assert "has no server-to-client requests" in error.message
    assert session.requests == []


async def test_relay_log_goes_to_the_owner_only(spec: ReplicaSpec) -> None:
    upstream = Upstream(spec, connect_timeout=1)
    (a, a_session), (b, b_session) = caller(connection()), caller(connection())
    upstream._relay.callers.append(a)
    await upstream._relay.log(log_params("info"))
    assert len(a_session.notifications) == 1
    upstream._relay.callers.append(b)  # two clients' calls: nobody gets it
    await upstream._relay.log(log_params("info"))
    assert len(a_session.notifications) == 1
    assert b_session.notifications == []


@pytest.mark.parametrize("version", [HANDSHAKE, MODERN])
async def test_a_request_the_caller_declared_no_capability_for_is_refused_for_it(
    version: str,
) -> None:
    """As the client would answer (no handler): a 2026-07-28 client asked anyway refuses
    the input, and its SDK fails the whole call the request came within."""
    relayed, session = caller(connection(version, mcp_types.ClientCapabilities()), version=version)
    with pytest.raises(MCPError) as info:
        await relayed.request(mcp_types.ListRootsRequest(), mcp_types.ListRootsResult, "roots/list")
    assert info.value.error.code == mcp_types.METHOD_NOT_FOUND
    assert session.requests == []
