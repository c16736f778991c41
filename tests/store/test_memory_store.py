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
