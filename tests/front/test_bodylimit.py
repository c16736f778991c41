"""Tests for `max_message_bytes` on the HTTP front (`mcp_agg.front.bodylimit`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from mcp_agg.front.bodylimit import BodyLimit


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the length of the body it read."""
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def chunks(*pieces: bytes) -> AsyncIterator[bytes]:
    """A body sent in chunks, without a Content-Length."""
    for piece in pieces:
        yield piece


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(("size", "status"), [(100, 200), (101, 413)])
async def test_body_limit(size: int, status: int, chunked: bool) -> None:
    transport = httpx.ASGITransport(app=BodyLimit(echo, 100))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        body: Any = chunks(b"x" * (size - 1), b"x") if chunked else b"x" * size
        response = await http.post("/mcp", content=body)
    assert response.status_code == status
    if status == 200:
        assert response.text == str(size)
    else:
        error = response.json()
        assert (error["id"], error["error"]["code"]) == (None, -32600)
        assert "max_message_bytes" in error["error"]["message"]
