"""Tests for mcp_agg.core.bridge: a modern-era client's call parked while a backend asks
for its input, the rounds that answer it, and a call whose client never comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types
import pytest
from mcp.shared.exceptions import MCPError

from mcp_agg.core.bridge import PARKED_STATE, Bridge, backend_round, passed_through
from mcp_agg.core.caller import Caller
from tests.core.test_caller import MODERN, caller, connection

ELICIT = mcp_types.ElicitRequest(
    params=mcp_types.ElicitRequestFormParams(
        message="name?", requested_schema={"type": "object", "properties": {}}
    )
)


def modern() -> Caller:
    return caller(connection(MODERN), version=MODERN)[0]


@asynccontextmanager
async def bridged(timeout: float = 5) -> AsyncIterator[Bridge]:
    """A bridge whose parked calls run in a task group of the test's own."""
    async with anyio.create_task_group() as tg:
        yield Bridge(lambda: tg, lambda: timeout)
        tg.cancel_scope.cancel()


async def freed(bridge: Bridge) -> None:
    """Wait (with a deadline) until the bridge holds no parked call."""
    with anyio.fail_after(5):
        while len(bridge):
            await anyio.sleep(0.01)


def asking(calls: Caller, log: list[str]) -> Callable[[], Awaitable[Any]]:
    """Work that asks the client once (as a backend's elicitation would), then answers."""

    async def work() -> dict[str, Any]:
        try:
            answer = await calls.request(ELICIT, mcp_types.ElicitResult, "elicitation/create")
        except anyio.get_cancelled_exc_class():
            log.append("cancelled")
            raise
        return {"content": [{"type": "text", "text": f"got {answer.action}"}]}

    return work


async def test_a_call_that_does_not_ask_is_answered_at_once() -> None:
    async with bridged() as bridge:

        async def work() -> str:
            return "done"

        assert await bridge.start(modern(), work) == "done"
        await freed(bridge)


async def test_a_backend_request_becomes_a_round_and_its_answer_goes_back() -> None:
    async with bridged() as bridge:
        calls, log = modern(), list[str]()
        first = await bridge.start(calls, asking(calls, log))
        assert first["resultType"] == "input_required"
        ((key, request),) = first["inputRequests"].items()
        assert request == ELICIT.model_dump(by_alias=True, mode="json", exclude_none=True)
        assert first["requestState"].startswith(PARKED_STATE)
        assert len(bridge) == 1  # the call stays in flight
        done = await bridge.resume(modern(), first["requestState"], {key: {"action": "accept"}})
        assert done == {"content": [{"type": "text", "text": "got accept"}]}
        await freed(bridge)


@pytest.mark.parametrize("state", [PARKED_STATE + "nosuch", "something else"])
async def test_an_unknown_state_is_refused(state: str) -> None:
    async with bridged() as bridge:
        with pytest.raises(MCPError, match="Invalid or expired requestState") as refused:
            await bridge.resume(modern(), state, {})
        assert refused.value.error.code == mcp_types.INVALID_PARAMS


async def test_an_unanswered_request_is_refused_to_the_backend() -> None:
    async with bridged() as bridge:
        calls, log = modern(), list[str]()
        first = await bridge.start(calls, asking(calls, log))
        with pytest.raises(MCPError, match="the client did not answer it"):
            await bridge.resume(modern(), first["requestState"], {})


async def test_a_client_that_never_comes_back_has_its_call_cancelled() -> None:
    async with bridged(0.2) as bridge:
        calls, log = modern(), list[str]()
        first = await bridge.start(calls, asking(calls, log))
        await freed(bridge)
        assert log == ["cancelled"]
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await bridge.resume(modern(), first["requestState"], {})


async def test_a_client_that_cancels_its_round_cancels_the_call() -> None:
    async with bridged(60) as bridge:
        calls, log = modern(), list[str]()
        with anyio.move_on_after(0.2):
            await bridge.start(calls, _never(calls, log))
        await freed(bridge)
        assert log == ["cancelled"]


def _never(calls: Caller, log: list[str]) -> Callable[[], Awaitable[Any]]:
    async def work() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            log.append("cancelled")
            raise

    return work


def test_a_backends_round_is_passed_through_with_its_state_marked() -> None:
    round_ = {"resultType": "input_required", "inputRequests": {}, "requestState": "b1"}
    passed = passed_through(round_)
    assert passed["inputRequests"] == {}
    state = passed["requestState"]
    assert state != "b1"
    # The client's retry gives the backend its own state back, with the answers.
    answers = {"q": {"action": "accept"}}
    sent = backend_round({"inputResponses": answers}, state)
    assert sent == {"requestState": "b1", "inputResponses": answers}
    complete = {"content": [], "resultType": "complete"}
    assert passed_through(complete) is complete


def test_a_state_the_gateway_did_not_mint_for_a_backend_is_refused() -> None:
    with pytest.raises(MCPError, match="Invalid or expired requestState"):
        backend_round({}, "not-ours")
