"""Tests for the fronts' drain (`mcp_agg.front.drain`), its middleware called directly."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import anyio.abc
import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.front.drain import Drain


class Front:
    """Requests through the drain's middleware, and the front's `idle`: every request
    it was given has ended (its answer written)."""

    def __init__(self, drain: Drain) -> None:
        self.drain = drain
        self.open = 0
        self.ended = anyio.Event()
        self.answers: dict[int, Any] = {}

    async def request(self, request_id: int, work: Any, method: str = "tools/call") -> None:
        ctx: Any = SimpleNamespace(request_id=request_id, method=method)
        self.open += 1
        try:
            self.answers[request_id] = await self.drain._middleware(ctx, work)
        except MCPError as exc:
            self.answers[request_id] = exc.error
        finally:
            self.open -= 1
            self.ended.set()
            self.ended = anyio.Event()

    async def idle(self) -> None:
        while self.open:
            await self.ended.wait()

    async def start(
        self, tg: anyio.abc.TaskGroup, request_id: int, method: str = "tools/call"
    ) -> None:
        """Start a request that works for a minute; return once it is being handled."""
        working = anyio.Event()

        async def work(ctx: Any) -> Any:
            working.set()
            await anyio.sleep(60)

        tg.start_soon(self.request, request_id, work, method)
        await working.wait()


async def refusing(drain: Drain) -> None:
    """Until the drain refuses new requests (the caller bounds the wait)."""
    while not drain._refusing:
        await anyio.sleep(0.01)


def takes(seconds: float, result: str = "done") -> Any:
    async def work(ctx: Any) -> Any:
        await anyio.sleep(seconds)
        return result

    return work


async def test_requests_pass_until_the_drain_begins() -> None:
    front = Front(Drain(grace=10))
    await front.request(1, takes(0))
    assert front.answers == {1: "done"}


async def test_a_call_in_flight_finishes_and_new_requests_are_refused() -> None:
    drain = Drain(grace=10)
    front = Front(drain)
    finish = anyio.Event()

    async def call(ctx: Any) -> str:
        await finish.wait()
        return "done"

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(front.request, 1, call)
            drain.begin("test")
            tg.start_soon(drain.run, front.idle)
            await refusing(drain)
            await front.request(2, takes(0))
            notification: Any = SimpleNamespace(request_id=None, method="notifications/x")
            assert await drain._middleware(notification, takes(0, "passed")) == "passed"
            finish.set()
    assert front.answers[1] == "done"
    assert front.answers[2].code == -32000
    assert "refused" in front.answers[2].message


async def test_a_call_beyond_the_grace_is_cancelled_with_an_error() -> None:
    drain = Drain(grace=0.2)
    front = Front(drain)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await front.start(tg, 1)
            drain.begin("test")
            await drain.run(front.idle)
    assert front.answers[1].code == -32000
    assert "shutdown_grace (0.2s)" in front.answers[1].message


async def test_another_stop_cuts_the_grace_short() -> None:
    drain = Drain(grace=60)
    front = Front(drain)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await front.start(tg, 1)
            drain.begin("test")
            tg.start_soon(drain.run, front.idle)
            drain.begin("test")
    assert "did not finish" in front.answers[1].message


async def test_requests_are_served_for_drain_seconds_first() -> None:
    drain = Drain(grace=10, serve_on=2)
    front = Front(drain)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            drain.begin("test")
            tg.start_soon(drain.run, front.idle)
            await front.request(1, takes(0))
            assert not drain._refusing
            await refusing(drain)
            await front.request(2, takes(0))
    assert front.answers[1] == "done"
    assert front.answers[2].code == -32000


async def test_open_streams_end_when_refusals_begin() -> None:
    drain = Drain(grace=60)
    front = Front(drain)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await front.start(tg, 1, "subscriptions/listen")
            drain.begin("test")
            await drain.run(front.idle)
    assert front.answers[1].code == -32000
    assert "stream ends" in front.answers[1].message


@pytest.mark.parametrize("grace", [0.0, 0.2])
async def test_run_returns_at_once_when_idle(grace: float) -> None:
    drain = Drain(grace=grace)
    front = Front(drain)
    drain.begin("test")
    with anyio.fail_after(1):
        await drain.run(front.idle)
