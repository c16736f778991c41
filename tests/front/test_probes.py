"""Tests for `/healthz`, `/readyz` and what a replica answers while it starts
(`mcp_agg.front.probes`), and for keeping the probes out of the access log."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from mcp_agg.front.probes import ProbeAccessFilter, Probes, ReadyState


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The MCP app behind the probes: answers 200 "mcp"."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"mcp"})


@pytest.mark.parametrize(
    ("state", "path", "status"),
    [
        ("starting", "/healthz", 200),
        ("starting", "/readyz", 503),
        ("starting", "/mcp", 200),
        ("starting", "/.well-known/oauth-protected-resource/mcp", 200),
        ("starting", "/admin/servers", 503),
        ("ready", "/healthz", 200),
        ("ready", "/readyz", 200),
        ("ready", "/mcp", 200),
        ("draining", "/healthz", 200),
        ("draining", "/readyz", 503),
        ("draining", "/mcp", 200),
    ],
)
async def test_probe_and_request_answers_by_state(
    state: ReadyState, path: str, status: int
) -> None:
    probes = Probes(app, mcp_path="/mcp")
    probes.state = state
    transport = httpx.ASGITransport(app=probes)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        probe = path in ("/healthz", "/readyz")
        response = await (http.get(path) if probe else http.post(path, json={}))
    assert response.status_code == status
    if path == "/readyz":
        assert response.json() == {"status": state}


async def test_a_route_but_mcp_while_starting_gets_a_json_rpc_error_and_retry_after() -> None:
    transport = httpx.ASGITransport(app=Probes(app, mcp_path="/mcp"))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.post("/admin/servers", json={})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()
    assert (error["jsonrpc"], error["id"], error["error"]["code"]) == ("2.0", None, -32000)
    assert "starting" in error["error"]["message"]


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/healthz", False),
        ("/readyz", False),
        ("/readyz?verbose=1", False),
        ("/mcp", True),
        ("/healthz/extra", True),
    ],
)
def test_probe_access_filter_drops_only_probe_lines(path: str, kept: bool) -> None:
    # The record uvicorn's access logger makes for a request.
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", path, "1.1", 200), None,
    )  # fmt: skip
    assert ProbeAccessFilter().filter(record) is kept
