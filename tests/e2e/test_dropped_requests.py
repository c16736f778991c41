"""An HTTP client that drops its connection mid-call cancels the backend call.

A real `mcp-agg serve --transport http` in front of `backends/protocol.py` (a stdio
backend whose `wait` tool records when it starts and when it is cancelled), with
`max_concurrent = 1`. A raw HTTP client posts a long `tools/call` on a handshake-era
session and closes its socket while the call runs, as a client does when its user
gives up or its process dies. The backend must see the cancellation, and the bulkhead
slot the call held must be free for the next call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from tests.e2e.procs import (
    BACKENDS,
    eventually,
    messages,
    open_session,
    served_gateway,
)

pytestmark = pytest.mark.e2e


@dataclass
class Setup:
    url: str
    events: Path

    def seen(self, event: str) -> int:
        lines = self.events.read_text().splitlines() if self.events.exists() else []
        return lines.count(event)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    events = tmp_path / "events.txt"
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 120

[[servers]]
name = "protocol"
command = "python"
args = ["{BACKENDS / "protocol.py"}", "--events-file", "{events}"]
max_concurrent = 1
queue_timeout = 3
"""
    )
    with served_gateway(config) as (url, _):
        yield Setup(url, events)


def raw_post(url: str, headers: dict[str, str], body: dict[str, object]) -> bytes:
    """An HTTP/1.1 POST as bytes, sent by hand so that the test owns the socket."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        *(f"{name}: {value}" for name, value in headers.items()),
        f"Content-Length: {len(data)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + data


def wait_call(request_id: int, seconds: float) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "protocol_wait", "arguments": {"seconds": seconds}},
    }


async def test_a_dropped_connection_cancels_the_backend_call(setup: Setup) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, setup.url, "test_dropped_requests")
        port = urlsplit(setup.url).port
        assert port is not None
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(raw_post(setup.url, headers, wait_call(7, 600)))
            head = await sock.receive()
            assert head.startswith(b"HTTP/1.1 200"), head
            await eventually(lambda: setup.seen("started wait"), "the backend to start the call")
        # The socket is closed: the client is gone, mid-call.
        await eventually(
            lambda: setup.seen("cancelled wait"), "the backend to see the cancellation", 10
        )
        # The call's bulkhead slot is free (max_concurrent = 1, queue_timeout = 3).
        response = await http.post(setup.url, json=wait_call(8, 0), headers=headers)
        assert response.status_code == 200, response.text
        (answer,) = messages(response)
        assert answer["result"]["isError"] is False, answer
        assert answer["result"]["content"][0]["text"] == "waited", answer
