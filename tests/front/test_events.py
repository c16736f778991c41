"""Tests for the HTTP front's SSE event store (`mcp_agg.front.events`)."""

from __future__ import annotations

import mcp_types
import pytest
from mcp.server.streamable_http import EventMessage

from mcp_agg.front.events import BoundedEventStore

#: Bounds that never bind, for the tests of something else.
ROOMY = {"max_events": 100, "max_bytes": 1 << 20}


def note(n: int, padding: str = "") -> mcp_types.JSONRPCNotification:
    params = {"padding": padding} if padding else None
    return mcp_types.JSONRPCNotification(jsonrpc="2.0", method=f"notifications/n{n}", params=params)


def size(message: mcp_types.JSONRPCNotification) -> int:
    return len(message.model_dump_json(by_alias=True, exclude_unset=True))


async def replay(store: BoundedEventStore, after: str) -> tuple[str | None, list[str]]:
    """The stream `after` belongs to, and the methods replayed after it."""
    sent: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        sent.append(event)

    stream = await store.replay_events_after(after, send)
    return stream, [getattr(event.message, "method", "?") for event in sent]


async def test_replays_what_followed_on_the_same_stream_only() -> None:
    store = BoundedEventStore(**ROOMY)
    priming = await store.store_event("a", None)
    first = await store.store_event("a", note(1))
    await store.store_event("b", note(2))
    await store.store_event("a", note(3))
    assert await replay(store, priming) == ("a", ["notifications/n1", "notifications/n3"])
    assert await replay(store, first) == ("a", ["notifications/n3"])


async def test_a_replayed_message_is_the_one_stored() -> None:
    store = BoundedEventStore(**ROOMY)
    priming = await store.store_event("a", None)
    message = mcp_types.JSONRPCResponse(jsonrpc="2.0", id=7, result={"content": [], "x": None})
    stored = await store.store_event("a", message)
    sent: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        sent.append(event)

    await store.replay_events_after(priming, send)
    assert [event.event_id for event in sent] == [stored]
    assert sent[0].message == message


async def test_priming_events_are_never_replayed() -> None:
    store = BoundedEventStore(**ROOMY)
    first = await store.store_event("a", note(1))
    await store.store_event("a", None)  # a later priming event (a resumed stream's)
    assert await replay(store, first) == ("a", [])


async def test_an_unknown_event_id_resumes_nothing() -> None:
    store = BoundedEventStore(**ROOMY)
    await store.store_event("a", note(1))
    assert await replay(store, "no-such-event") == (None, [])


async def test_the_oldest_events_are_dropped_past_the_event_bound() -> None:
    store = BoundedEventStore(max_events=3, max_bytes=1 << 20)
    ids = [await store.store_event("a" if n % 2 else "b", note(n)) for n in range(6)]
    assert len(store) == 3
    assert await replay(store, ids[2]) == (None, [])  # dropped: nothing to resume
    assert await replay(store, ids[3]) == ("a", ["notifications/n5"])
    assert await replay(store, ids[4]) == ("b", [])


async def test_the_oldest_events_are_dropped_past_the_byte_bound() -> None:
    big = note(0, "x" * 1000)
    store = BoundedEventStore(max_events=100, max_bytes=2 * size(big))
    ids = [await store.store_event("a", note(n, "x" * 1000)) for n in range(3)]
    assert len(store) == 2
    assert store.size == 2 * size(big)
    assert await replay(store, ids[0]) == (None, [])
    assert await replay(store, ids[1]) == ("a", ["notifications/n2"])


async def test_the_newest_event_is_kept_whatever_its_size() -> None:
    store = BoundedEventStore(max_events=100, max_bytes=10)
    first = await store.store_event("a", note(1))
    second = await store.store_event("a", note(2, "x" * 100))
    assert len(store) == 1
    assert await replay(store, first) == (None, [])
    assert await replay(store, second) == ("a", [])


@pytest.mark.parametrize(("events", "size_bound"), [(0, 10), (10, 0), (-1, 10)])
def test_a_bound_below_one_is_refused(events: int, size_bound: int) -> None:
    with pytest.raises(ValueError, match="bounds must be at least 1"):
        BoundedEventStore(max_events=events, max_bytes=size_bound)
