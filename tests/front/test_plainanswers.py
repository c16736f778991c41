"""Which answers the HTTP front streams: the client's ranking of its `Accept`."""

from __future__ import annotations

import pytest

from mcp_agg.front.plainanswers import prefers_stream


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
