"""The HTTP front's SSE event store: what lets a client resume a dropped response stream.

With an event store, the SDK's streamable HTTP transport primes each POST's SSE stream
(an event id and the `retry` interval before anything else) and keeps the events it
sends, so a client whose stream was ended mid-call reconnects with `Last-Event-ID` and is
sent what it missed (SEP-1699). Without one (FastMCP's default) there is no priming and
nothing to resume.

The store is in memory and bounded, across every session, both in events and in bytes
(each message is kept as the JSON it is sent as, which is also smaller than the model):
the oldest events are dropped first, so a client that comes back after newer events
pushed its own out finds nothing left to replay. FastMCP scopes the store per session
(its `SessionScopedEventStore`), so one client cannot replay another's events.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter

__all__ = ["BoundedEventStore"]


@dataclass(frozen=True)
class _Event:
    seq: int
    event_id: EventId
    stream_id: StreamId
    data: bytes | None  # the message as sent; None: a priming event, never replayed


class BoundedEventStore(EventStore):
    """The SDK's `EventStore`, in memory, keeping the last `max_events` events and at most
    `max_bytes` of messages (the newest event is kept whatever its size)."""

    def __init__(self, *, max_events: int, max_bytes: int) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError(f"bounds must be at least 1, not {max_events} and {max_bytes}")
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._bytes = 0
        self._seq = itertools.count()
        self._order: deque[_Event] = deque()  # every kept event, oldest first
        self._streams: dict[StreamId, deque[_Event]] = {}
        self._by_id: dict[EventId, _Event] = {}

    def __len__(self) -> int:
        return len(self._order)

    @property
    def size(self) -> int:
        """The bytes of the messages kept."""
        return self._bytes

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        seq = next(self._seq)
        # As the SDK's transport writes it, so a replay sends the same bytes.
        data = (
            None
            if message is None
            else message.model_dump_json(by_alias=True, exclude_unset=True).encode()
        )
        event = _Event(seq, str(seq), stream_id, data)
        self._order.append(event)
        self._streams.setdefault(stream_id, deque()).append(event)
        self._by_id[event.event_id] = event
        self._bytes += len(data or b"")
        while len(self._order) > 1 and (
            len(self._order) > self._max_events or self._bytes > self._max_bytes
        ):
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
            if event.data is not None:
                message = jsonrpc_message_adapter.validate_json(event.data, by_name=False)
                await send_callback(EventMessage(message, event.event_id))
        return last.stream_id

    def _forget(self, event: _Event) -> None:
        del self._by_id[event.event_id]
        self._bytes -= len(event.data or b"")
        stream = self._streams[event.stream_id]
        stream.popleft()  # a stream's oldest event is the oldest overall among its own
        if not stream:
            del self._streams[event.stream_id]
