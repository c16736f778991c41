"""Tests for mcp_agg.core.cache: concurrent misses of one key make one backend call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from fastmcp.exceptions import ToolError

from mcp_agg.core import cache as cache_module
from mcp_agg.core.cache import CacheRule, Caching
from tests.core.test_cache import PUBLIC, Tool, call, stage


class GatedTool(Tool):
    """A backend tool whose calls all wait at a gate until the test opens it."""

    def __init__(self, rule: CacheRule | None, fails: bool = False, **extra: Any) -> None:
        super().__init__(rule, **extra)
        self.gate = anyio.Event()
        self.fails = fails

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        number = self.calls
        await self.gate.wait()
        if self.fails:
            raise ToolError(f"call {number} failed")
        return {"content": [{"type": "text", "text": str(number)}], **self.extra}


async def together(
    cache: Caching, tool: GatedTool, callers: list[dict[str, Any]]
) -> list[str | BaseException]:
    """Each of `callers` (its call's arguments) calling at once; the gate opened once
    every one of them waits (on the backend or on another's call)."""
    answers: list[str | BaseException] = ["unanswered"] * len(callers)

    async def one(index: int, arguments: dict[str, Any]) -> None:
        try:
            answers[index] = await call(cache, tool, **arguments)
        except ToolError as exc:
            answers[index] = exc

    async with anyio.create_task_group() as tg:
        for index, arguments in enumerate(callers):
            tg.start_soon(one, index, arguments)
        await anyio.wait_all_tasks_blocked()
        tool.gate.set()
    return answers


async def test_concurrent_misses_of_one_key_make_one_backend_call() -> None:
    cache, tool = stage(), GatedTool(PUBLIC)
    assert await together(cache, tool, [{"a": 1}] * 8) == ["1"] * 8
    assert tool.calls == 1
    stats = cache.store.stats
    assert (stats.misses, stats.coalesced, stats.hits) == (8, 7, 0)
    assert await call(cache, tool, a=1) == "1"  # and the answer was kept


async def test_different_keys_are_not_coalesced(monkeypatch: pytest.MonkeyPatch) -> None:
    cache, tool = stage(), GatedTool(PUBLIC)
    answers = await together(cache, tool, [{"a": 1}, {"a": 2}, {"a": 1}, {"a": 2}])
    assert sorted(map(str, answers)) == ["1", "1", "2", "2"]
    assert tool.calls == 2
    # Private entries: two users never share a call's answer either.
    users = iter(["alice", "bob"] * 2)
    monkeypatch.setattr(cache_module, "current_user", lambda auth: next(users))
    private = GatedTool(CacheRule(30, "private"))
    answers = await together(cache, private, [{}, {}])
    assert sorted(map(str, answers)) == ["1", "2"]


async def test_waiters_get_the_leaders_error_and_nothing_is_kept() -> None:
    cache, tool = stage(), GatedTool(PUBLIC, fails=True)
    answers = await together(cache, tool, [{}] * 4)
    assert [str(answer) for answer in answers] == ["call 1 failed"] * 4
    assert tool.calls == 1
    tool.fails = False
    assert await call(cache, tool) == "2"


async def test_waiters_get_an_error_result_that_is_not_kept() -> None:
    cache, tool = stage(), GatedTool(PUBLIC, isError=True)
    assert await together(cache, tool, [{}] * 4) == ["1"] * 4
    assert tool.calls == 1
    assert await call(cache, tool) == "2"


async def test_a_waiter_giving_up_leaves_the_call_to_the_others() -> None:
    cache, tool = stage(), GatedTool(PUBLIC)
    answers: list[str] = []

    async def answered() -> None:
        answers.append(await call(cache, tool))

    async with anyio.create_task_group() as tg:
        tg.start_soon(answered)  # the leader
        await anyio.wait_all_tasks_blocked()
        with anyio.move_on_after(0) as impatient:  # a waiter whose deadline has passed
            await call(cache, tool)
        assert impatient.cancelled_caught
        tg.start_soon(answered)  # a waiter that waits
        await anyio.wait_all_tasks_blocked()
        tool.gate.set()
    assert (answers, tool.calls) == (["1", "1"], 1)


async def test_a_cancelled_leaders_waiters_call_again() -> None:
    cache, tool = stage(), GatedTool(PUBLIC)
    answers: list[str] = []

    async def answered() -> None:
        answers.append(await call(cache, tool))

    with anyio.fail_after(5):  # the waiters must not hang
        await lead_and_cancel(tool, answered)
    assert answers == ["2"] * 3


async def lead_and_cancel(tool: GatedTool, answered: Callable[[], Awaitable[None]]) -> None:
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as leading:
            leading.start_soon(answered)
            await anyio.wait_all_tasks_blocked()
            for _ in range(3):
                tg.start_soon(answered)
            await anyio.wait_all_tasks_blocked()
            leading.cancel_scope.cancel()  # its client cancelled the request
        await anyio.wait_all_tasks_blocked()
        assert tool.calls == 2  # one waiter leads now; the others wait for it
        tool.gate.set()


async def test_a_call_for_fresh_data_does_not_wait_for_another() -> None:
    cache, tool = stage(), GatedTool(PUBLIC)
    answers: list[str] = []

    async def answered(meta: dict[str, Any] | None) -> None:
        answers.append(await call(cache, tool, meta))

    async with anyio.create_task_group() as tg:
        tg.start_soon(answered, None)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(answered, {"mcp-agg/cache": False})
        await anyio.wait_all_tasks_blocked()
        assert tool.calls == 2
        tool.gate.set()
    assert sorted(answers) == ["1", "2"]
