"""A replica fetches its listing again when its backend says a list changed: in a task
started for the change, not one that waits for changes for the life of every session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from mcp_agg.backend import upstream as upstream_module
from mcp_agg.backend.upstream import Listing, ReplicaState, Upstream
from tests.fakes import FakeBackend, upstreams


class Fetches:
    """A stand-in for `fetch_listing`: counts fetches, each held until `release`d."""

    def __init__(self) -> None:
        self.count = 0
        self.release = anyio.Event()

    async def __call__(self, _client: Any, *, at_once: bool) -> Listing:
        self.count += 1
        await self.release.wait()
        return Listing()


async def _until(condition: Any) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0.005)


@contextlib.asynccontextmanager
async def serving(count: int) -> AsyncIterator[list[Upstream]]:
    """`count` replicas connected to fake backends (no health checks), until left."""
    replicas = [FakeBackend(up=True).serve(replica) for replica in upstreams("svc", replicas=count)]
    async with anyio.create_task_group() as tg:
        for replica in replicas:
            tg.start_soon(replica.run)
        await _until(lambda: all(r.state is ReplicaState.CONNECTED for r in replicas))
        yield replicas
        for replica in replicas:
            await replica.stop()


async def test_a_serving_replica_keeps_one_task() -> None:
    """Tasks are memory each backend holds (docs/benchmarks.md, RSS): the supervisor is
    the one task of a connected replica without health checks."""
    async with serving(1):
        one = len(asyncio.all_tasks())
    async with serving(3):
        three = len(asyncio.all_tasks())
    assert (three - one) / 2 == 1


async def test_changes_said_during_a_fetch_are_fetched_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetches = Fetches()
    monkeypatch.setattr(upstream_module, "fetch_listing", fetches)
    async with serving(1) as (replica,):
        replica._request_refresh()
        await _until(lambda: fetches.count == 1)
        for _ in range(3):  # while the first fetch is under way
            replica._request_refresh()
        fetches.release.set()
        await _until(lambda: fetches.count == 2 and not replica._refresh_wanted)
        await anyio.sleep(0.05)  # no third fetch follows
        assert fetches.count == 2
        # Then the next change is fetched again.
        replica._request_refresh()
        await _until(lambda: fetches.count == 3)


async def test_a_change_said_while_connecting_is_fetched_once_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetches = Fetches()
    fetches.release.set()
    monkeypatch.setattr(upstream_module, "fetch_listing", fetches)
    (replica,) = upstreams("svc")
    replica._request_refresh()  # before the session is up: nothing to fetch on yet
    assert fetches.count == 0
    FakeBackend(up=True).serve(replica)
    async with anyio.create_task_group() as tg:
        tg.start_soon(replica.run)
        await _until(lambda: fetches.count == 1)
        await replica.stop()


async def test_a_failed_fetch_loses_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(_client: Any, *, at_once: bool) -> Listing:
        raise ConnectionError("backend went away")

    monkeypatch.setattr(upstream_module, "fetch_listing", failing)
    async with serving(1) as (replica,):
        replica._request_refresh()
        await _until(lambda: replica.stats.last_error == "backend went away")
