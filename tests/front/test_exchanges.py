"""Tests for the HTTP front's exchanges (`mcp_agg.front.exchanges`), around a fake MCP
app."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from starlette.types import Message, Receive, Scope, Send

from mcp_agg.front.exchanges import Exchanges

SESSION = [(b"mcp-session-id", b"s1"), (b"authorization", b"Bearer t")]


def post(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/mcp", "headers": headers}


def client(body: bytes, *, leaves: bool) -> Receive:
    """A client that sends `body`, then leaves (or waits for its answer)."""
    messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if not leaves:
            await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    return receive


class StreamingApp:
    """Answers a POST with a stream it ends only when it has an answer, telling the
    exchange (as the MCP server's middleware does) the id of the request it handles;
    records the requests it was given."""

    def __init__(self, *, answers: bool) -> None:
        self.answers = answers
        self.seen: list[tuple[Scope, bytes]] = []
        self.exchanges: Exchanges | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = (await receive())["body"]
        self.seen.append((scope, body))
        await self._handle(scope, body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if self.answers or b"notifications/cancelled" in body:
            await send({"type": "http.response.body", "body": b"answer", "more_body": False})
            return
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _handle(self, scope: Scope, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            return
        ctx: Any = SimpleNamespace(
            request_id=message.get("id"),
            method=message.get("method"),
            request=SimpleNamespace(scope=scope),
        )
        assert self.exchanges is not None
        await self.exchanges._note_request(ctx, noop)


async def noop(ctx: Any) -> None:
    pass


def exchanges_around(app: StreamingApp) -> Exchanges:
    app.exchanges = Exchanges(app)
    return app.exchanges


async def ignore(message: Message) -> None:
    pass


CALL = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {}}).encode()


async def test_a_request_its_client_left_is_cancelled_on_its_session() -> None:
    app = StreamingApp(answers=False)
    await exchanges_around(app)(post(SESSION), client(CALL, leaves=True), ignore)
    (_, first), (scope, body) = app.seen
    assert first == CALL
    assert json.loads(body) == {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "the client disconnected"},
    }
    headers = dict(scope["headers"])
    assert headers[b"mcp-session-id"] == b"s1"
    assert headers[b"authorization"] == b"Bearer t"
    assert headers[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize(
    ("headers", "body", "answers"),
    [
        (SESSION, CALL, True),  # answered before the client left
        ([], CALL, False),  # no session: the modern era cancels it itself
        (SESSION, b'{"jsonrpc": "2.0", "id": 1, "method": "initialize"}', False),
        (SESSION, b'{"jsonrpc": "2.0", "method": "notifications/x"}', False),
        (SESSION, b"not json", False),
    ],
)
async def test_nothing_else_is_cancelled(
    headers: list[tuple[bytes, bytes]], body: bytes, answers: bool
) -> None:
    app = StreamingApp(answers=answers)
    await exchanges_around(app)(post(headers), client(body, leaves=True), ignore)
    assert len(app.seen) == 1


async def test_idle_waits_for_the_posts_under_way() -> None:
    answer = anyio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await answer.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answer"})

    exchanges = Exchanges(app)
    idle = anyio.Event()

    async def waiting() -> None:
        await exchanges.idle()
        idle.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(exchanges, post(SESSION), client(CALL, leaves=False), ignore)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiting)
            await anyio.wait_all_tasks_blocked()
            assert not idle.is_set()
            answer.set()
            await idle.wait()


async def test_close_streams_ends_a_get_stream_with_its_closing_chunk() -> None:
    sent: list[Message] = []

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
        await anyio.sleep_forever()

    async def record(message: Message) -> None:
        sent.append(message)

    exchanges = Exchanges(stream)
    get = {"type": "http", "method": "GET", "path": "/mcp", "headers": SESSION}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(exchanges, get, client(b"", leaves=False), record)
            await anyio.wait_all_tasks_blocked()
            exchanges.close_streams()
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
