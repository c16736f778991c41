"""The stdio front while the gateway starts: which messages wait for it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification, JSONRPCRequest

from mcp_agg.front.starting import UntilStarted

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
