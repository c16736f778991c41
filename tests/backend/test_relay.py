"""Tests for the ownership rules of a backend session's relay (backend/relay.py, with the
rule each front sets in core/sessions.py and the fixed owner of core/peer.py): who gets
a backend's roots, sampling and elicitation requests and its log messages, in a call and
outside one, on each front and in each session mode."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any, Literal

import anyio
import mcp_types
import pytest
from mcp.server.connection import Connection, NotifyOnlyOutbound
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.clientsessions import ClientSession
from mcp_agg.backend.relay import ClientRelay
from mcp_agg.config import config_from_raw
from mcp_agg.core.peer import ConnectionPeer
from mcp_agg.core.sessions import Sessions
from tests.core.test_caller import HANDSHAKE, caller, log_params

ALL = mcp_types.ClientCapabilities(
    roots=mcp_types.RootsCapability(),
    sampling=mcp_types.SamplingCapability(),
    elicitation=mcp_types.ElicitationCapability(),
)
ANSWERS: dict[str, dict[str, Any]] = {
    "roots/list": {"roots": [{"uri": "file:///home/alice/secret-project"}]},
    "sampling/createMessage": {
        "role": "assistant",
        "content": {"type": "text", "text": "hi"},
        "model": "m",
    },
    "elicitation/create": {"action": "decline"},
}


class Standalone:
    """A client connection's standalone channel: records what the gateway sends on it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.notifications: list[str] = []

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        self.requests.append(method)
        return ANSWERS[method]

    async def notify(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> None:
        self.notifications.append(method)


def client_connection(
    capabilities: mcp_types.ClientCapabilities = ALL,
) -> tuple[Connection, Standalone]:
    channel = Standalone()
    connection = Connection(channel, protocol_version=HANDSHAKE)  # type: ignore[arg-type]
    connection.client_capabilities = capabilities
    connection.initialized.set()
    return connection, channel


def sessions_for(front: Literal["stdio", "http"]) -> Sessions:
    config = config_from_raw({"servers": [{"name": "s", "command": "x"}]}, None, {})
    host = SimpleNamespace(config=config, upstreams=[])
    sessions = Sessions(host, bus=None)  # type: ignore[arg-type]
    sessions.serve(front)
    return sessions


REQUESTS: dict[str, mcp_types.ServerRequest] = {
    "roots": mcp_types.ListRootsRequest(),
    "sampling": mcp_types.CreateMessageRequest(
        params=mcp_types.CreateMessageRequestParams(messages=[], max_tokens=5)
    ),
    "elicitation": mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestFormParams(
            message="?", requested_schema={"type": "object", "properties": {}}
        )
    ),
}
RESULTS = {
    "roots": mcp_types.ListRootsResult,
    "sampling": mcp_types.CreateMessageResult,
    "elicitation": mcp_types.ElicitResult,
}

# What each kind of message reaches: "call" (the calling client, on its call's channel),
# "standalone" (the session's owner, on its standalone channel), "empty" (roots answered
# with none, no client asked), "refused" (an error to the backend, no client asked),
# "dropped" (a log message nobody is told).
TABLE = [
    # The stdio front has one client: shared and per-client are the same there.
    *(
        (front_mode, where, kind, "call" if where == "in call" else "standalone")
        for front_mode in (("stdio", "shared"), ("stdio", "per_client"))
        for where in ("in call", "outside")
        for kind in ("roots", "sampling", "elicitation", "log")
    ),
    # A session the HTTP front's clients share reveals no client's roots, and knows no
    # owner outside a call.
    (("http", "shared"), "in call", "roots", "empty"),
    (("http", "shared"), "in call", "sampling", "call"),
    (("http", "shared"), "in call", "elicitation", "call"),
    (("http", "shared"), "in call", "log", "call"),
    (("http", "shared"), "outside", "roots", "empty"),
    (("http", "shared"), "outside", "sampling", "refused"),
    (("http", "shared"), "outside", "elicitation", "refused"),
    (("http", "shared"), "outside", "log", "dropped"),
    # A per-client session belongs to its client, in a call or not.
    *(
        (("http", "per_client"), where, kind, "call" if where == "in call" else "standalone")
        for where in ("in call", "outside")
        for kind in ("roots", "sampling", "elicitation", "log")
    ),
]


def relay_of(front: Literal["stdio", "http"], mode: str, connection: Connection) -> ClientRelay:
    """The relay of the backend session that serves `connection`'s client."""
    sessions = sessions_for(front)
    if front == "stdio":
        assert sessions.stdio_client is not None
        sessions.stdio_client.attach(connection)
    if front == "http" and mode == "per_client":
        peer = ConnectionPeer(sessions.log_levels, wait=1, connection=connection)
        return ClientSession(connection, peer, "s", "s-1").relay
    return ClientRelay("s-1", sessions.relay_rule, server="s")


@pytest.mark.parametrize(("front_mode", "where", "kind", "reaches"), TABLE)
async def test_who_a_backend_message_reaches(
    front_mode: tuple[Literal["stdio", "http"], str], where: str, kind: str, reaches: str
) -> None:
    front, mode = front_mode
    connection, standalone = client_connection()
    relay = relay_of(front, mode, connection)
    call, call_session = caller(connection)
    if kind in REQUESTS:
        call_session.answer = RESULTS[kind].model_validate(ANSWERS[REQUESTS[kind].method])
    if where == "in call":
        relay.callers.append(call)
    if kind == "log":
        await relay.log(log_params("info"))
        got = {
            "call": bool(call_session.notifications),
            "standalone": bool(standalone.notifications),
        }
        outcome = next((k for k, v in got.items() if v), "dropped")
    else:
        answer = await relay.request(REQUESTS[kind], RESULTS[kind])
        asked = {"call": bool(call_session.requests), "standalone": bool(standalone.requests)}
        if isinstance(answer, mcp_types.ErrorData):
            outcome = "refused"
        elif isinstance(answer, mcp_types.ListRootsResult) and not answer.roots:
            outcome = "empty"
        else:
            outcome = next(k for k, v in asked.items() if v)
        assert sum(asked.values()) == (outcome in ("call", "standalone"))
    assert outcome == reaches


async def test_an_owner_without_the_capability_answers_method_not_found() -> None:
    connection, standalone = client_connection(mcp_types.ClientCapabilities())
    peer = ConnectionPeer(sessions_for("stdio").log_levels, wait=1, connection=connection)
    with pytest.raises(MCPError) as raised:
        await peer.ask(REQUESTS["roots"], mcp_types.ListRootsResult, "roots/list from s-1")
    assert raised.value.error.code == mcp_types.METHOD_NOT_FOUND
    assert standalone.requests == []


async def test_a_request_before_the_client_initialized_waits_for_it() -> None:
    sessions = sessions_for("stdio")
    relay = ClientRelay("s-1", sessions.relay_rule, server="s")
    connection, standalone = client_connection()
    connection.initialized = anyio.Event()  # connected, not initialized yet
    answers: list[Any] = []

    async def ask() -> None:
        answers.append(await relay.request(REQUESTS["roots"], mcp_types.ListRootsResult))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask)
        await anyio.sleep(0.05)
        assert sessions.stdio_client is not None
        sessions.stdio_client.attach(connection)
        await anyio.sleep(0.05)
        assert answers == []  # attached, but the client has not initialized
        connection.initialized.set()
    assert standalone.requests == ["roots/list"]
    assert isinstance(answers[0], mcp_types.ListRootsResult)
    assert answers[0].roots


async def test_a_client_that_never_comes_is_not_waited_for_forever() -> None:
    config = config_from_raw(
        {"gateway": {"connect_timeout": 0.1}, "servers": [{"name": "s", "command": "x"}]},
        None,
        {},
    )
    sessions = Sessions(SimpleNamespace(config=config, upstreams=[]), bus=None)  # type: ignore[arg-type]
    sessions.serve("stdio")
    relay = ClientRelay("s-1", sessions.relay_rule, server="s")
    answer = await relay.request(REQUESTS["roots"], mcp_types.ListRootsResult)
    assert isinstance(answer, mcp_types.ErrorData)
    assert "did not initialize within 0.1s" in answer.message


async def test_a_modern_stdio_client_is_answered_for_at_once() -> None:
    """It never initializes, and takes no server requests: from its first request on, a
    backend asking it gets "method not found" at once, not after connect_timeout."""
    sessions = sessions_for("stdio")
    relay = ClientRelay("s-1", sessions.relay_rule, server="s")
    channel = Standalone()
    connection = Connection.from_envelope(
        "2026-07-28",
        None,
        {"roots": {}},
        outbound=NotifyOnlyOutbound(channel),  # type: ignore[arg-type]
    )
    sessions.client_seen(connection)
    with anyio.fail_after(0.5):
        answer = await relay.request(REQUESTS["roots"], mcp_types.ListRootsResult)
    assert isinstance(answer, mcp_types.ErrorData)
    assert answer.code == mcp_types.METHOD_NOT_FOUND
    assert channel.requests == []
