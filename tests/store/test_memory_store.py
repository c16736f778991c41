"""The embedded store's revocations: a revocation says whether it was the first."""

from __future__ import annotations

import pytest

from mcp_agg.store import MemoryStore
from tests.fakes import FakeClock


@pytest.mark.parametrize(
    ("ttl", "first", "revoked"),
    [(60.0, True, True), (float("inf"), True, True), (0.0, False, False)],
)
async def test_a_revocation_says_whether_it_was_the_first(
    ttl: float, first: bool, revoked: bool
) -> None:
    store = MemoryStore(clock=FakeClock())
    assert await store.revoke("state-1", ttl) is first
    assert await store.is_revoked("state-1") is revoked
    assert await store.revoke("state-1", ttl) is False


async def test_a_lapsed_revocation_can_be_made_again() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert await store.revoke("state-1", 10)
    clock.advance(11)
    assert not await store.is_revoked("state-1")
    assert await store.revoke("state-1", 10)


async def test_cached_responses_last_their_ttl_and_a_clear_forgets_a_space() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock, max_entries=2)
    await store.keep("a", "k", "1", 10)
    await store.keep("b", "k", "2", 10)
    assert [await store.cached("a", "k"), await store.cached("b", "k")] == ["1", "2"]
    await store.clear("a")
    assert [await store.cached("a", "k"), await store.cached("b", "k")] == [None, "2"]
    clock.advance(10)
    assert await store.cached("b", "k") is None
    for n in range(3):
        await store.keep("c", str(n), "x", 10)
    assert await store.cached("c", "0") is None  # beyond max_entries, the oldest went


async def test_a_clear_of_a_tag_forgets_that_tags_responses_alone() -> None:
    store = MemoryStore(clock=FakeClock())
    await store.keep("a", "read-1", "1", 10, tag="uri-1")
    await store.keep("a", "read-2", "2", 10, tag="uri-2")
    await store.keep("a", "call", "3", 10)
    await store.clear("a", "uri-1")
    assert [
        await store.cached("a", "read-1", "uri-1"),
        await store.cached("a", "read-2", "uri-2"),
    ] == [None, "2"]
    assert await store.cached("a", "call") == "3"
    await store.clear("a")
    assert await store.cached("a", "read-2", "uri-2") is None
