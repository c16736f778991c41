"""Tests for the stdio front's session wire (`mcp_agg.front.wire`), over fake pipes."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import pytest
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCRequest, JSONRPCResponse

from mcp_agg.front.earlyinit import EarlyAnswer
from mcp_agg.front.wire import LineWire


class Pipes:
    """The client's side: chunks it sends, lines it got."""

    def __init__(self, *chunks: bytes, broken: bool = False) -> None:
        self.chunks = list(chunks)
        self.written: list[Any] = []
        self.broken = broken
        self.more = anyio.Event()

    async def read(self) -> bytes:
        while not self.chunks:
            await self.more.wait()
            self.more = anyio.Event()
        return self.chunks.pop(0)

    def send(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.more.set()

    async def write(self, data: bytes) -> None:
        if self.broken:
            raise BrokenPipeError("the client is gone")
        assert data.index(b"\n") == len(data) - 1  # one message, one line
        self.written.append(json.loads(data))


async def test_lines_reach_the_session_and_bad_ones_are_answered() -> None:
    eofs: list[str] = []
    pipes = Pipes(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\nnot json\n[]\n', b"")
    wire = LineWire(pipes, limit=1000, on_eof=eofs.append)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wire.read_client)
            tg.start_soon(wire.write_client)
            item = await wire.read_stream.receive()
            assert isinstance(item, SessionMessage)
            assert item.message == JSONRPCRequest(jsonrpc="2.0", id=1, method="ping")
            with anyio.move_on_after(0.1) as waited:
                await wire.idle()
            assert waited.cancelled_caught, "request 1 is unanswered"
            answer = JSONRPCResponse(jsonrpc="2.0", id=1, result={})
            await wire.write_stream.send(SessionMessage(answer))
            await wire.idle()
            wire.close()
            await wire.write_stream.aclose()
            await wire.written.wait()
    wire.read_stream.close()
    codes = sorted(m["error"]["code"] for m in pipes.written if "error" in m)
    assert codes == [-32700, -32600]
    assert {"jsonrpc": "2.0", "id": 1, "result": {}} in pipes.written
    assert eofs == ["stdin closed"]


async def test_a_line_over_the_limit_is_refused() -> None:
    line = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "m", "params": {"p": "x" * 500}})
    pipes = Pipes(line.encode() + b"\n", b"")
    wire = LineWire(pipes, limit=100, on_eof=lambda why: None)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wire.read_client)
            tg.start_soon(wire.write_client)
            while not pipes.written:
                await anyio.sleep(0.01)
            wire.close()
            await wire.write_stream.aclose()
    wire.read_stream.close()
    (answer,) = pipes.written
    assert (answer["id"], answer["error"]["code"]) == (3, -32600)


async def test_a_client_that_stops_reading_ends_the_waits() -> None:
    eofs: list[str] = []
    pipes = Pipes(b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}\n', broken=True)
    wire = LineWire(pipes, limit=1000, on_eof=eofs.append)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wire.read_client)
            tg.start_soon(wire.write_client)
            await wire.read_stream.receive()
            answer = JSONRPCResponse(jsonrpc="2.0", id=1, result={})
            await wire.write_stream.send(SessionMessage(answer))
            await wire.idle()
            wire.close()
            await wire.write_stream.aclose()
            tg.cancel_scope.cancel()
    wire.read_stream.close()
    assert eofs == ["stdout closed"]


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ({"protocolVersion": "2025-11-25"}, False),
        ({"protocolVersion": "2025-06-18"}, True),  # not the answer the client got
    ],
)
async def test_the_sessions_answer_to_a_handshake_answered_early_is_checked_not_written(
    caplog: pytest.LogCaptureFixture, result: dict[str, Any], error: bool
) -> None:
    early = EarlyAnswer(7, {"protocolVersion": "2025-11-25"})
    pipes = Pipes(b"")  # the client sends nothing more
    wire = LineWire(pipes, limit=1000, on_eof=lambda why: None, answered=early)
    with caplog.at_level(logging.DEBUG, "mcp_agg.front.wire"), anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wire.read_client)
            tg.start_soon(wire.write_client)
            for request_id in (7, 8, 7):  # the handshake's answer, then any other
                answer = JSONRPCResponse(jsonrpc="2.0", id=request_id, result=result)
                await wire.write_stream.send(SessionMessage(answer))
            await wire.write_stream.aclose()
            await wire.written.wait()
            wire.close()
    wire.read_stream.close()
    assert [message["id"] for message in pipes.written] == [8, 7]
    differs = [r for r in caplog.records if "differs" in r.getMessage()]
    assert [r.levelno for r in differs] == ([logging.ERROR] if error else [])
