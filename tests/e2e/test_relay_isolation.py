"""Relay isolation: one backend session serves the calls of several clients, and what the
backend sends during a call (elicitation, log messages) never reaches the wrong client.

Real processes: `mcp-agg serve --transport http` in front of `backends/protocol.py` as a
stdio backend (`ps`), and two handshake-era HTTP clients, A and B.

To know that A's call really is in flight on the backend session before B calls, the
backend is started through `tee`, which copies every line the gateway writes to the
backend's stdin into a file. The gateway registers a call as in flight (`ClientRelay.callers`)
before it writes the request, and forgets it only when the call ends; so once A's
`tools/call wait` line is in that file, A's call is in flight on that session until A
cancels it. The backend itself is unchanged.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    eventually,
    free_port,
    served_gateway,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BACKEND = BACKENDS / "protocol.py"
NOT_TOLD = "the gateway cannot tell which client to ask"
SEVERAL = "calls of several clients are in flight"


@dataclass
class Setup:
    url: str
    events: Path
    wire: Path

    def events_seen(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []

    def backend_got(self, method: str, name: str) -> int:
        """How many `method` requests for `name` the gateway has written to the backend."""
        if not self.wire.exists():
            return 0
        count = 0
        for line in self.wire.read_text().splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a line still being written
            if (
                isinstance(message, dict)
                and message.get("method") == method
                and (message.get("params") or {}).get("name") == name
            ):
                count += 1
        return count


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("relay")
    events, wire = folder / "events.txt", folder / "wire.jsonl"
    port = free_port()
    pipeline = (
        f"tee -a {shlex.quote(str(wire))} | "
        f"{shlex.quote(PYTHON)} {shlex.quote(str(BACKEND))} "
        f"--events-file {shlex.quote(str(events))}"
    )
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 60

# The backend asks the handshake era's way (test_protocol.py): that era, pinned.
[[servers]]
name = "ps"
command = "sh"
args = ["-c", {json.dumps(pipeline)}]
protocol = "legacy"
"""
    )
    with served_gateway(config, port=port) as (url, _):
        yield Setup(url, events, wire)


class Person:
    """One client's handlers for what the backend sends it: records everything."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.logs: list[Any] = []

    async def elicit(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asked.append(message)
        return response_type(value=self.answer) if response_type else ElicitResult(action="accept")

    async def log(self, message: Any) -> None:
        self.logs.append(message)


def client(setup: Setup, person: Person) -> Client[Any]:
    return Client(
        StreamableHttpTransport(setup.url),
        mode="legacy",
        timeout=60,
        elicitation_handler=person.elicit,
        log_handler=person.log,
    )


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def ask_until_answered(
    asker: Client[Any], question: str, timeout: float = 15.0
) -> mcp_types.CallToolResult:
    """`ps_ask` until the gateway knows whom to ask.

    Used just after a cancelled call: the backend records `cancelled wait` when the
    gateway's cancellation reaches it, and the gateway forgets the cancelled call right
    after sending that cancellation, so an ask that reaches the backend in between may
    still meet the cancelled call. Any refusal must be the one for several clients.
    """
    with anyio.fail_after(timeout):
        while True:
            result = await asker.call_tool_mcp("ps_ask", {"question": question})
            if not result.is_error:
                return result
            assert SEVERAL in text(result), text(result)
            await anyio.sleep(0.05)


async def start_wait(
    setup: Setup, waiter: Client[Any], tg: anyio.abc.TaskGroup, scope: anyio.CancelScope
) -> None:
    """Start a 30 s `ps_wait` for `waiter` and return once it is in flight on the backend."""
    before = setup.backend_got("tools/call", "wait")

    async def wait() -> None:
        with scope:
            await waiter.call_tool_mcp("ps_wait", {"seconds": 30})
        if not scope.cancel_called:
            raise AssertionError("the wait ended before the test cancelled it")

    tg.start_soon(wait)
    await eventually(
        lambda: setup.backend_got("tools/call", "wait") > before, "the wait to reach the backend"
    )


async def cancel_wait(setup: Setup, scope: anyio.CancelScope) -> None:
    before = setup.events_seen().count("cancelled wait")
    scope.cancel()
    await eventually(
        lambda: setup.events_seen().count("cancelled wait") > before,
        "the backend to see the wait cancelled",
    )


async def test_a_request_is_not_sent_to_another_clients_handler(setup: Setup) -> None:
    a, b = Person("from A"), Person("from B")
    async with client(setup, a) as client_a, client(setup, b) as client_b:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            await start_wait(setup, client_a, tg, scope)

            refused = await client_b.call_tool_mcp("ps_ask", {"question": "B's question"})
            assert refused.is_error, refused
            assert NOT_TOLD in text(refused)
            assert SEVERAL in text(refused)
            assert a.asked == []
            assert b.asked == []

            await cancel_wait(setup, scope)

        answered = await ask_until_answered(client_b, "B's question")
        assert text(answered) == "accept: from B"
        assert b.asked == ["B's question"]
        assert a.asked == []


async def test_log_messages_are_not_sent_to_another_client(setup: Setup) -> None:
    a, b = Person("from A"), Person("from B")
    async with client(setup, a) as client_a, client(setup, b) as client_b:
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            await start_wait(setup, client_a, tg, scope)
            # The backend logs three lines during B's call, while A's call is in
            # flight too: neither client may get them.
            result = await client_b.call_tool_mcp("ps_steps", {"count": 1})
            assert not result.is_error, result
            await cancel_wait(setup, scope)

        # Alone on the session, B gets its call's log lines; a relayed log message is
        # sent on the call's own stream before its result, so they are here by now.
        assert b.logs == []
        result = await client_b.call_tool_mcp("ps_steps", {"count": 1})
        assert not result.is_error, result
        assert [m.data["msg"] for m in b.logs] == ["debug line", "info line", "warning line"]
        assert a.logs == []


async def test_a_clients_own_calls_share_its_handler(setup: Setup) -> None:
    """Several calls in flight from one client: the backend's request goes to that client."""
    a, b = Person("from A"), Person("from B")
    async with client(setup, a) as client_a, client(setup, b), anyio.create_task_group() as tg:
        scope = anyio.CancelScope()
        await start_wait(setup, client_a, tg, scope)
        answered = await client_a.call_tool_mcp("ps_ask", {"question": "A's question"})
        assert not answered.is_error, answered
        assert text(answered) == "accept: from A"
        await cancel_wait(setup, scope)
    assert a.asked == ["A's question"]
    assert b.asked == []
