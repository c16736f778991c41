"""Tests for the HTTP front's SSE event store (`mcp_agg.front.events`)."""

from __future__ import annotations

import mcp_types
import pytest
from mcp.server.streamable_http import EventMessage

from mcp_agg.front.events import BoundedEventStore


def note(n: int) -> mcp_types.JSONRPCNotification:
    return mcp_types.JSONRPCNotification(jsonrpc="2.0", method=f"notifications/n{n}")


async def replay(store: BoundedEventStore, after: str) -> tuple[str | None, list[str]]:
    """The stream `after` belongs to, and the methods replayed after it."""
    sent: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        sent.append(event)

    stream = await store.replay_events_after(after, send)
    return stream, [getattr(event.message, "method", "?") for event in sent]


async def test_replays_what_followed_on_the_same_stream_only() -> None:
    store = BoundedEventStore(max_events=100)
    priming = await store.store_event("a", None)
    first = await store.store_event("a", note(1))
    await store.store_event("b", note(2))
    await store.store_event("a", note(3))
    assert await replay(store, priming) == ("a", ["notifications/n1", "notifications/n3"])
    assert await replay(store, first) == ("a", ["notifications/n3"])


async def test_priming_events_are_never_replayed() -> None:
    store = BoundedEventStore(max_events=100)
    first = await store.store_event("a", note(1))
    await store.store_event("a", None)  # a later priming event (a resumed stream's)
    assert await replay(store, first) == ("a", [])


async def test_an_unknown_event_id_resumes_nothing() -> None:
    store = BoundedEventStore(max_events=100)
    await store.store_event("a", note(1))
    assert await replay(store, "no-such-event") == (None, [])


async def test_the_oldest_events_are_dropped_past_the_bound() -> None:
    store = BoundedEventStore(max_events=3)
    ids = [await store.store_event("a" if n % 2 else "b", note(n)) for n in range(6)]
    assert len(store) == 3
    assert await replay(store, ids[2]) == (None, [])  # dropped: nothing to resume
    assert await replay(store, ids[3]) == ("a", ["notifications/n5"])
    assert await replay(store, ids[4]) == ("b", [])


@pytest.mark.parametrize("bound", [0, -1])
def test_a_bound_below_one_is_refused(bound: int) -> None:
    with pytest.raises(ValueError, match="max_events must be at least 1"):
        BoundedEventStore(max_events=bound)
