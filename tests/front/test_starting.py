"""Both fronts while the gateway starts: which messages wait for it."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification, JSONRPCRequest
from starlette.types import Message, Receive, Scope, Send

from mcp_agg.front.starting import HeldUntilStarted, UntilStarted

Item = SessionMessage | Exception


def request(method: str, id: int = 1) -> SessionMessage:
    return SessionMessage(JSONRPCRequest(jsonrpc="2.0", id=id, method=method, params={}))


async def first_through(item: Item, started: anyio.Event) -> tuple[Any, bool]:
    """What `UntilStarted` passes on of `item`, and whether it waited for `started`."""
    send, receive = anyio.create_memory_object_stream[Item](1)
    got: list[Item] = []
    async with send, UntilStarted(receive, started) as stream, anyio.create_task_group() as tg:
        await send.send(item)
        tg.start_soon(lambda: _append(got, stream))
        await anyio.wait_all_tasks_blocked()  # it got through, or waits for the start
        waited = not got
        started.set()
    return got[0], waited


async def _append(got: list[Item], stream: UntilStarted) -> None:
    got.append(await stream.receive())


@pytest.mark.parametrize(
    ("item", "waits"),
    [
        (request("initialize"), False),
        (request("server/discover"), False),
        (request("ping"), False),
        (
            SessionMessage(JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized")),
            False,
        ),
        (ValueError("not JSON"), False),
        (request("tools/list"), True),
        (request("tools/call"), True),
        (request("resources/read"), True),
    ],
    ids=lambda v: (
        v if isinstance(v, bool) else getattr(getattr(v, "message", v), "method", "error")
    ),
)
async def test_only_what_needs_the_catalog_waits_for_the_start(item: Item, waits: bool) -> None:
    got, waited = await first_through(item, anyio.Event())
    assert got is item
    assert waited is waits


async def test_once_started_nothing_waits() -> None:
    started = anyio.Event()
    started.set()
    item = request("tools/call")
    assert await first_through(item, started) == (item, False)


async def held_until(
    body: bytes, started: bool, *, settled_before: bool = False
) -> tuple[int | None, bytes | None, bool]:
    """POST `body` through `HeldUntilStarted`, settled (`started`) once it got through or
    is held (or before it came): the status, the body the app behind it read, whether
    it was held."""
    read: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        read.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    held = HeldUntilStarted(app)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    if settled_before:
        held.settle(started=started)
    async with anyio.create_task_group() as tg:
        tg.start_soon(held, scope, receive, send)
        await anyio.wait_all_tasks_blocked()
        waited = not sent
        held.settle(started=started)
    return (sent[0]["status"] if sent else None), (read[0] if read else None), waited


def rpc(method: str, **fields: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, **fields}).encode()


@pytest.mark.parametrize(
    ("body", "waits"),
    [
        (rpc("initialize", id=1, params={}), False),
        (rpc("server/discover", id=1), False),
        (rpc("ping", id=1), False),
        (rpc("notifications/initialized"), False),
        (b'{"jsonrpc": "2.0", "id": 1, "result": {}}', False),
        (b"not JSON", False),
        (rpc("tools/list", id=1), True),
        (rpc("tools/call", id="a", params={"name": "t"}), True),
        (b"[" + rpc("ping", id=1) + b"," + rpc("resources/read", id=2) + b"]", True),
    ],
)
async def test_over_http_only_a_post_that_needs_the_catalog_is_held(
    body: bytes, waits: bool
) -> None:
    status, read, waited = await held_until(body, started=True)
    assert (status, read, waited) == (200, body, waits)


@pytest.mark.parametrize("settled_before", [False, True], ids=["held", "after the stop"])
async def test_what_needs_the_catalog_is_refused_if_the_gateway_never_starts(
    settled_before: bool,
) -> None:
    got = await held_until(rpc("tools/list", id=1), False, settled_before=settled_before)
    assert got == (503, None, not settled_before)
    assert await held_until(rpc("ping", id=1), False, settled_before=settled_before) == (
        200,
        rpc("ping", id=1),
        False,
    )
