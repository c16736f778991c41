"""Tests for the fail-safe wrapper (mcp_agg.store.failsafe): what a replica does while
the shared store is unreachable, in both `store_failure` modes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from mcp_agg.errors import StoreUnavailable
from mcp_agg.store import MemoryStore, Registration
from mcp_agg.store.failsafe import FailSafeStore
from tests.fakes import FakeClock

ADDRESS = "redis://redis.internal:6379/0"


class FlakyStore(MemoryStore):
    """A shared store that can be taken down; counts the operations that reached it."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.down = False
        self.asked = 0

    def _reach(self) -> None:
        self.asked += 1
        if self.down:
            raise StoreUnavailable(f"store {ADDRESS} unreachable: no answer within 0.5 s")

    async def take_token(self, key: str, rate: float, burst: float) -> float:
        self._reach()
        return await super().take_token(key, rate, burst)

    async def revoke(self, key: str, ttl: float) -> bool:
        self._reach()
        return await super().revoke(key, ttl)

    async def is_revoked(self, key: str) -> bool:
        self._reach()
        return await super().is_revoked(key)

    async def registrations(self) -> dict[str, str]:
        self._reach()
        return await super().registrations()

    def watch_registrations(self) -> AsyncIterator[Registration]:
        return super().watch_registrations()

    async def cached(self, space: str, key: str, tag: str | None = None) -> str | None:
        self._reach()
        return await super().cached(space, key, tag)

    async def keep(
        self, space: str, key: str, value: str, ttl: float, tag: str | None = None
    ) -> None:
        self._reach()
        await super().keep(space, key, value, ttl, tag)

    async def clear(self, space: str, tag: str | None = None) -> None:
        self._reach()
        await super().clear(space, tag)

    async def get_secret(self, key: str) -> bytes | None:
        self._reach()
        return await super().get_secret(key)

    async def put_secret(self, key: str, value: bytes) -> None:
        self._reach()
        await super().put_secret(key, value)


def failsafe(
    failure: Literal["open", "closed"],
) -> tuple[FailSafeStore, FlakyStore, FakeClock]:
    clock = FakeClock()
    shared = FlakyStore(clock)
    return FailSafeStore(shared, address=ADDRESS, failure=failure, clock=clock), shared, clock


def store_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "mcp_agg.store.failsafe"
    ]


@pytest.mark.parametrize(
    ("failure", "meanwhile"),
    [
        ("open", "rate limits per replica until it is back (store_failure = open)"),
        ("closed", "rate-limited calls refused until it is back (store_failure = closed)"),
    ],
)
async def test_one_warning_when_the_store_fails_and_one_info_when_it_is_back(
    caplog: pytest.LogCaptureFixture, failure: Literal["open", "closed"], meanwhile: str
) -> None:
    caplog.set_level(logging.INFO, "mcp_agg.store.failsafe")
    store, shared, clock = failsafe(failure)
    shared.down = True
    for _ in range(5):
        try:
            await store.take_token("alice|", 1, 5)
        except StoreUnavailable:
            assert failure == "closed"
        clock.advance(2)  # past the backoff: each call tries the store again
    assert shared.asked == 5
    assert store_lines(caplog) == [
        (
            logging.WARNING,
            f"store {ADDRESS} unreachable: no answer within 0.5 s; {meanwhile}",
        )
    ]
    assert not store.available
    shared.down = False
    await store.take_token("alice|", 1, 5)
    await store.take_token("alice|", 1, 5)
    assert store.available
    assert store_lines(caplog)[1:] == [
        (logging.INFO, f"store {ADDRESS} is back: rate limits are fleet-wide again")
    ]


async def test_open_takes_tokens_from_this_replicas_own_buckets_meanwhile() -> None:
    store, shared, _ = failsafe("open")
    shared.down = True
    assert [await store.take_token("alice|", 1, 2) for _ in range(3)] == [0.0, 0.0, 1.0]


async def test_closed_raises_store_unavailable_for_the_limiter_to_refuse() -> None:
    store, shared, _ = failsafe("closed")
    shared.down = True
    with pytest.raises(StoreUnavailable, match="unreachable: no answer"):
        await store.take_token("alice|", 1, 2)


@pytest.mark.parametrize("failure", ["open", "closed"])
async def test_after_a_failure_the_store_is_not_asked_again_until_the_backoff_passed(
    failure: Literal["open", "closed"],
) -> None:
    store, shared, clock = failsafe(failure)
    shared.down = True
    for _ in range(20):
        with contextlib.suppress(StoreUnavailable):
            await store.take_token("alice|", 100, 100)
    assert shared.asked == 1  # not one timeout per call
    clock.advance(0.5)
    with pytest.raises(StoreUnavailable):
        await store.registrations()
    assert shared.asked == 1
    clock.advance(0.5)  # the backoff (1 s) has passed: one call tries again
    shared.down = False
    assert await store.registrations() == {}
    assert shared.asked == 2
    await store.take_token("alice|", 100, 100)
    assert shared.asked == 3  # back: every call goes to the store again


@pytest.mark.parametrize("failure", ["open", "closed"])
async def test_revocations_are_kept_here_too_while_the_store_is_down(
    failure: Literal["open", "closed"],
) -> None:
    store, shared, clock = failsafe(failure)
    await shared.revoke("session-1", 60)  # by another replica
    assert await store.is_revoked("session-1")
    shared.down = True
    await store.revoke("session-2", 60)
    assert await store.is_revoked("session-1") is False  # unknown here: not refused
    assert await store.is_revoked("session-2")
    clock.advance(2)
    shared.down = False
    assert await store.is_revoked("session-2")  # the store never heard of it: still refused
    assert await store.is_revoked("session-1")
    clock.advance(61)
    assert not await store.is_revoked("session-2")


async def test_registrations_are_not_made_up_while_the_store_is_down() -> None:
    store, shared, _ = failsafe("open")
    shared.down = True
    with pytest.raises(StoreUnavailable):
        await store.registrations()


async def test_secrets_are_the_shared_stores_and_never_kept_here_meanwhile() -> None:
    store, shared, clock = failsafe("open")
    await store.put_secret("alice", b"sealed")
    assert await shared.get_secret("alice") == b"sealed"
    shared.down = True
    with pytest.raises(StoreUnavailable):
        await store.put_secret("bob", b"sealed")
    clock.advance(5)
    with pytest.raises(StoreUnavailable):
        await store.get_secret("alice")
    assert await store.local.get_secret("bob") is None
    shared.down = False
    clock.advance(5)
    assert await store.get_secret("alice") == b"sealed"
    await store.delete_secret("alice")
    assert await store.get_secret("alice") is None


async def test_cached_responses_are_misses_while_the_store_is_down() -> None:
    clock = FakeClock()
    shared = FlakyStore(clock)
    store = FailSafeStore(shared, address=ADDRESS, failure="closed", clock=clock)
    await store.keep("s", "k", "v", 30)
    assert await store.cached("s", "k") == "v"
    shared.down = True
    clock.advance(5)
    assert await store.cached("s", "k") is None  # a miss, even with store_failure = closed
    await store.keep("s", "k2", "v", 30)  # not kept, no error
    await store.clear("s")  # lost, no error
    shared.down = False
    clock.advance(5)
    assert await store.cached("s", "k") == "v"
    assert await store.cached("s", "k2") is None
