"""The HTTP front's SSE event store: what lets a client resume a dropped response stream.

With an event store, the SDK's streamable HTTP transport primes each POST's SSE stream
(an event id and the `retry` interval before anything else) and keeps the events it
sends, so a client whose stream dropped mid-call reconnects with `Last-Event-ID` and is
sent what it missed (SEP-1699). Without one (FastMCP's default) there is no priming and
nothing to resume: a dropped stream loses the call's answer.

The store is in memory and bounded in events, across every session: the oldest events
are dropped first, so a client that comes back after `max_events` newer events were sent
(to anyone) finds nothing left to replay. FastMCP scopes the store per session (its
`SessionScopedEventStore`), so one client cannot replay another's events.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["BoundedEventStore"]


@dataclass(frozen=True)
class _Event:
    seq: int
    event_id: EventId
    stream_id: StreamId
    message: JSONRPCMessage | None  # None: a priming event, never replayed


class BoundedEventStore(EventStore):
    """The SDK's `EventStore`, in memory, keeping the last `max_events` events."""

    def __init__(self, max_events: int) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be at least 1, not {max_events}")
        self._max_events = max_events
        self._seq = itertools.count()
        self._order: deque[_Event] = deque()  # every kept event, oldest first
        self._streams: dict[StreamId, deque[_Event]] = {}
        self._by_id: dict[EventId, _Event] = {}

    def __len__(self) -> int:
        return len(self._order)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        seq = next(self._seq)
        event = _Event(seq, str(seq), stream_id, message)
        self._order.append(event)
        self._streams.setdefault(stream_id, deque()).append(event)
        self._by_id[event.event_id] = event
        while len(self._order) > self._max_events:
            self._forget(self._order.popleft())
        return event.event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        last = self._by_id.get(last_event_id)
        if last is None:
            return None  # unknown, or dropped already: nothing to resume
        later = [e for e in self._streams.get(last.stream_id, ()) if e.seq > last.seq]
        for event in later:
            if event.message is not None:
                await send_callback(EventMessage(event.message, event.event_id))
        return last.stream_id

    def _forget(self, event: _Event) -> None:
        del self._by_id[event.event_id]
        stream = self._streams[event.stream_id]
        stream.popleft()  # a stream's oldest event is the oldest overall among its own
        if not stream:
            del self._streams[event.stream_id]
