"""Tests for mcp_agg.backend.transports.sessions: which HTTP answers refuse a session, and
that the verdict reaches the request that was refused through the SDK's client."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_agg.backend.transports.sessions import SessionCheck, note_session_refusal

URL = "http://backend.test/mcp"
IN_SESSION = {"mcp-session-id": "s-1"}
#: What the TypeScript SDK's servers answer for a session they do not know.
TYPESCRIPT = {
    "jsonrpc": "2.0",
    "error": {"code": -32000, "message": "Bad Request: No valid session ID provided"},
}


def answer(
    status: int,
    body: dict[str, Any] | None = None,
    *,
    method: str = "POST",
    headers: dict[str, str] = IN_SESSION,
) -> httpx2.Response:
    request = httpx2.Request(method, URL, headers=headers)
    return httpx2.Response(status, json=body, request=request)


async def seen(response: httpx2.Response) -> bool:
    check = SessionCheck()
    with check.watching():
        await note_session_refusal(response)
    return check.gone


@pytest.mark.parametrize(
    ("response", "gone"),
    [
        pytest.param(answer(404), True, id="404"),
        pytest.param(answer(404, {"jsonrpc": "2.0", "id": "server-error"}), True, id="404-body"),
        pytest.param(answer(400, TYPESCRIPT), True, id="typescript-400"),
        pytest.param(answer(400, {**TYPESCRIPT, "id": None}), True, id="400-null-id"),
        pytest.param(answer(400, {**TYPESCRIPT, "id": 7}), False, id="400-for-the-request"),
        pytest.param(
            answer(400, {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}}),
            False,
            id="400-not-about-the-session",
        ),
        pytest.param(answer(400), False, id="400-no-body"),
        pytest.param(answer(500, TYPESCRIPT), False, id="500"),
        pytest.param(answer(200, {"jsonrpc": "2.0", "id": 1, "result": {}}), False, id="200"),
        pytest.param(answer(404, headers={}), False, id="no-session-yet"),
        pytest.param(answer(404, method="GET"), False, id="the-GET-stream"),
    ],
)
async def test_which_answers_refuse_the_session(response: httpx2.Response, gone: bool) -> None:
    assert await seen(response) is gone


async def test_an_answer_with_no_request_watching_is_ignored() -> None:
    await note_session_refusal(answer(404))  # no check to note it on, and no error


def typescript_backend(request: httpx2.Request) -> httpx2.Response:
    """A backend that opens a session, then no longer knows it (as after a restart)."""
    if request.method != "POST":
        return httpx2.Response(405)
    message = json.loads(request.content)
    if message.get("method") == "initialize":
        result = {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "restarted", "version": "1"},
        }
        return httpx2.Response(
            200, headers=IN_SESSION, json={"jsonrpc": "2.0", "id": message["id"], "result": result}
        )
    if "id" not in message:
        return httpx2.Response(202)
    return httpx2.Response(400, json=TYPESCRIPT)


async def test_the_refusal_reaches_the_request_that_sent_it_through_the_sdk() -> None:
    """The SDK sends each request from a task of its own, run in the sender's context; the
    SDK's error alone no longer says that the session was refused."""
    hooks = {"response": [note_session_refusal]}
    transport = httpx2.MockTransport(typescript_backend)
    async with (
        httpx2.AsyncClient(transport=transport, event_hooks=hooks) as http,
        streamable_http_client(URL, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        check = SessionCheck()
        with pytest.raises(MCPError) as raised, check.watching():
            await session.list_tools()
        assert raised.value.error.message == "Server returned an error response"
        assert check.gone is True
