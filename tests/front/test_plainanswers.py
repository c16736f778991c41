"""Which answers the HTTP front streams, and what it keeps of them for resumption."""

from __future__ import annotations

import pytest
from mcp.server.streamable_http import EventMessage
from mcp_types import JSONRPCNotification, JSONRPCResponse

from mcp_agg.front.events import BoundedEventStore
from mcp_agg.front.plainanswers import DeferredStreamTransport, prefers_stream


@pytest.mark.parametrize(
    ("accept", "stream"),
    [
        ("application/json, text/event-stream", False),
        ("text/event-stream, application/json", True),
        ("Text/Event-Stream , application/json", True),
        ("application/json;q=0.5, text/event-stream", True),
        ("text/event-stream;q=0.9, application/json", False),
        ("text/event-stream; q=1, application/json; q=1", True),
        ("text/event-stream;q=oops, application/json", False),
        ("text/event-stream", True),
        ("application/json", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_a_stream_is_wanted_only_when_ranked_first(accept: str, stream: bool) -> None:
    assert prefers_stream(accept) is stream


async def test_a_response_kept_out_while_undecided_is_stored_once_streamed() -> None:
    """While a request's answer is undecided its response is not stored (a JSON answer is
    never replayed); once the answer is a stream, it is stored after what came before
    it, so a resumed stream replays in wire order."""
    store = BoundedEventStore(max_events=16, max_bytes=1 << 20)
    transport = DeferredStreamTransport(mcp_session_id="s", event_store=store)
    kept = transport._event_store
    assert kept is not None
    progress = JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={})
    result = JSONRPCResponse(jsonrpc="2.0", id=1, result={})
    priming = await kept.store_event("1", None)
    transport._undecided.add("1")
    assert await kept.store_event("1", progress)
    assert await kept.store_event("1", result) == ""  # left out
    assert len(store) == 2
    transport._undecided.discard("1")
    stored = await transport._stored("1", EventMessage(result, ""))
    assert stored.event_id
    assert await transport._stored("1", stored) is stored  # stored already

    replayed: list[EventMessage] = []

    async def collect(event: EventMessage) -> None:
        replayed.append(event)

    await store.replay_events_after(priming, collect)
    assert [event.message for event in replayed] == [progress, result]
