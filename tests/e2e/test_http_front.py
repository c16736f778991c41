"""The HTTP front as raw HTTP sees it: Host/Origin checks and the session lifecycle.

A real `mcp-agg serve --transport http` in front of the demo backends, spoken to with
httpx, so that status codes and headers are checked as a browser or a conformance suite
sees them, not as an MCP client library smooths them over.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.procs import (
    HANDSHAKE,
    INITIALIZED,
    demo_servers,
    free_port,
    post_initialize,
    served_gateway,
    session_headers,
    sse_events,
)

pytestmark = pytest.mark.e2e

EVIL = "evil.example.com"


def rpc_message(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of a response, whether sent as JSON or as one SSE event
    (after the priming event, whose data is empty)."""
    if response.headers["content-type"].startswith("text/event-stream"):
        lines = response.text.splitlines()
        data = [line[5:] for line in lines if line.startswith("data:") and line[5:].strip()]
        assert len(data) == 1, f"expected one event, got {response.text!r}"
        message: dict[str, Any] = json.loads(data[0])
    else:
        message = response.json()
    return message


@dataclass(frozen=True)
class Gateway:
    url: str
    port: int


@pytest.fixture(scope="module")
def default_gateway(http_gateway: tuple[str, subprocess.Popen[bytes], Path]) -> Gateway:
    """conftest's HTTP gateway (every kind of backend), with the default Host/Origin rules."""
    url, _, _ = http_gateway
    return Gateway(url, int(url.rsplit(":", 1)[1].split("/")[0]))


@pytest.fixture(scope="module")
def configured_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose servers.toml sets allowed_hosts and allowed_origins."""
    folder = tmp_path_factory.mktemp("http-front")
    port = free_port()
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
allowed_hosts = ["mcp.example.test", "127.0.0.1:{port}"]
allowed_origins = ["https://app.example.test", "http://127.0.0.1:*"]
{demo_servers(folder)}"""
    )
    with served_gateway(config, port=port) as (url, _):
        yield Gateway(url, port)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def assert_initialized(response: httpx.Response) -> str:
    """A successful initialize: the handshake-era result and a session id; returns the id."""
    assert response.status_code == 200, response.text
    result = rpc_message(response)["result"]
    assert result["protocolVersion"] == HANDSHAKE
    assert result["serverInfo"]["name"] == "mcp-agg"
    session_id = response.headers.get("mcp-session-id")
    assert session_id
    return session_id


def assert_refused(response: httpx.Response, header: str) -> None:
    """Refused before any MCP processing: 403, a reason naming the header, no session."""
    assert response.status_code == 403, response.text
    assert "mcp-session-id" not in response.headers
    error = response.json()["error"]
    assert f"{header} header not allowed" in error["message"]


# ---------------------------------------------------------------- default rules (loopback)


async def test_bad_host_is_refused(http: httpx.AsyncClient, default_gateway: Gateway) -> None:
    response = await post_initialize(http, default_gateway.url, {"Host": EVIL})
    assert_refused(response, "Host")


async def test_bad_origin_is_refused(http: httpx.AsyncClient, default_gateway: Gateway) -> None:
    response = await post_initialize(http, default_gateway.url, {"Origin": f"http://{EVIL}"})
    assert_refused(response, "Origin")
    for origin in ("null", f"https://localhost.{EVIL}", "http://localhost.:1"):
        response = await post_initialize(http, default_gateway.url, {"Origin": origin})
        assert_refused(response, "Origin")


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
async def test_loopback_host_and_origin_are_accepted(
    http: httpx.AsyncClient, default_gateway: Gateway, name: str
) -> None:
    host = f"{name}:{default_gateway.port}"
    for origin in (f"http://{host}", f"https://{name}:5173", f"http://{name}"):
        response = await post_initialize(
            http, default_gateway.url, {"Host": host, "Origin": origin}
        )
        assert_initialized(response)
    assert_initialized(await post_initialize(http, default_gateway.url, {"Host": "[::1]:1"}))


async def test_conformance_dns_rebinding_scenario(
    http: httpx.AsyncClient, default_gateway: Gateway
) -> None:
    """As the suite's dns-rebinding-protection scenario sends it: Host and Origin alike."""
    bad = await post_initialize(
        http, default_gateway.url, {"Host": EVIL, "Origin": f"http://{EVIL}"}
    )
    assert 400 <= bad.status_code < 500
    good_host = f"127.0.0.1:{default_gateway.port}"
    good = await post_initialize(
        http, default_gateway.url, {"Host": good_host, "Origin": f"http://{good_host}"}
    )
    assert 200 <= good.status_code < 300


# ---------------------------------------------------------------- configured rules


async def test_configured_hosts_replace_the_defaults(
    http: httpx.AsyncClient, configured_gateway: Gateway
) -> None:
    url, port = configured_gateway.url, configured_gateway.port
    assert_initialized(await post_initialize(http, url, {"Host": "mcp.example.test"}))
    assert_initialized(await post_initialize(http, url, {"Host": f"127.0.0.1:{port}"}))
    # Loopback names are no longer allowed by default, and an exact pattern has no port.
    for host in (f"localhost:{port}", "mcp.example.test:8443", EVIL):
        assert_refused(await post_initialize(http, url, {"Host": host}), "Host")


async def test_configured_origins_replace_the_defaults(
    http: httpx.AsyncClient, configured_gateway: Gateway
) -> None:
    url, port = configured_gateway.url, configured_gateway.port
    for origin in ("https://app.example.test", f"http://127.0.0.1:{port}", "http://127.0.0.1"):
        assert_initialized(await post_initialize(http, url, {"Origin": origin}))
    for origin in (f"http://localhost:{port}", "http://app.example.test", f"http://{EVIL}"):
        assert_refused(await post_initialize(http, url, {"Origin": origin}), "Origin")


# ---------------------------------------------------------------- session lifecycle


@pytest_asyncio.fixture
async def session(http: httpx.AsyncClient, default_gateway: Gateway) -> dict[str, str]:
    """The headers of an initialized handshake-era session."""
    session_id = assert_initialized(await post_initialize(http, default_gateway.url))
    headers = session_headers(session_id)
    response = await http.post(default_gateway.url, json=INITIALIZED, headers=headers)
    assert response.status_code == 202, response.text
    return headers


async def test_requests_with_the_session_id_work(
    http: httpx.AsyncClient, default_gateway: Gateway, session: dict[str, str]
) -> None:
    request = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    response = await http.post(default_gateway.url, json=request, headers=session)
    assert response.status_code == 200, response.text
    names = {tool["name"] for tool in rpc_message(response)["result"]["tools"]}
    assert "units_convert" in names

    ping = {"jsonrpc": "2.0", "id": 3, "method": "ping"}
    response = await http.post(default_gateway.url, json=ping, headers=session)
    assert response.status_code == 200, response.text
    assert rpc_message(response) == {"jsonrpc": "2.0", "id": 3, "result": {}}


async def test_get_opens_the_standalone_stream(
    http: httpx.AsyncClient, default_gateway: Gateway, session: dict[str, str]
) -> None:
    headers = {**session, "Accept": "text/event-stream"}
    del headers["Content-Type"]
    async with http.stream("GET", default_gateway.url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
    # Leaving the block closed the stream; the session is still usable.
    ping = {"jsonrpc": "2.0", "id": 4, "method": "ping"}
    response = await http.post(default_gateway.url, json=ping, headers=session)
    assert response.status_code == 200, response.text


async def test_delete_ends_the_session(
    http: httpx.AsyncClient, default_gateway: Gateway, session: dict[str, str]
) -> None:
    url = default_gateway.url
    request = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}
    # A DELETE from a foreign origin is refused and ends nothing.
    refused = await http.delete(url, headers={**session, "Origin": f"http://{EVIL}"})
    assert_refused(refused, "Origin")
    assert (await http.post(url, json=request, headers=session)).status_code == 200

    deleted = await http.delete(url, headers=session)
    assert 200 <= deleted.status_code < 300, deleted.text
    after = await http.post(url, json=request, headers=session)
    assert after.status_code == 404, after.text
    assert (await http.delete(url, headers=session)).status_code == 404


async def test_unknown_session_id_is_404(
    http: httpx.AsyncClient, default_gateway: Gateway, session: dict[str, str]
) -> None:
    request = {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}
    headers = {**session, "Mcp-Session-Id": "0123456789abcdef0123456789abcdef"}
    response = await http.post(default_gateway.url, json=request, headers=headers)
    assert response.status_code == 404, response.text
    stream_headers = {**headers, "Accept": "text/event-stream"}
    async with http.stream("GET", default_gateway.url, headers=stream_headers) as stream:
        assert stream.status_code == 404


async def test_ping_through_a_handshake_era_client(default_gateway: Gateway) -> None:
    transport = StreamableHttpTransport(default_gateway.url)
    async with Client(transport, mode="legacy", timeout=30) as client:
        assert client.protocol_version == HANDSHAKE
        assert client.initialize_result is not None
        assert await client.ping() is True


@pytest.mark.parametrize(
    "accept",
    [
        "application/json, text/event-stream",  # the MCP SDKs' order
        "text/event-stream, application/json",
        "application/json;q=0.5, text/event-stream",
    ],
)
async def test_a_handshake_era_answer_is_a_stream_whatever_the_accept_order(
    http: httpx.AsyncClient, default_gateway: Gateway, session: dict[str, str], accept: str
) -> None:
    """Every handshake-era request is answered as an SSE stream, its headers sent at once:
    a gateway that dies under a call then leaves a broken stream, which fails only that
    request, not a POST without a response, which mcp 2.3.0's client takes as its whole
    session failing (docs/performance.md, "Plain JSON answers, withdrawn")."""
    request = {"jsonrpc": "2.0", "id": 8, "method": "tools/call"}
    request["params"] = {"name": "units_add", "arguments": {"a": 1, "b": 2}}
    response = await http.post(
        default_gateway.url, json=request, headers={**session, "Accept": accept}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    message = rpc_message(response)
    assert message["id"] == 8
    assert message["result"]["structuredContent"] == {"result": 3.0}


# ---------------------------------------------------------------- resumability (SEP-1699)


async def test_post_streams_are_primed_and_resumable(
    http: httpx.AsyncClient, default_gateway: Gateway, session: dict[str, str]
) -> None:
    """A POST's SSE stream opens with a priming event (an id, no data, the `retry`
    interval), and a client that lost the stream after it gets the answer again with
    Last-Event-ID."""
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
    streamed = {**session, "Accept": "text/event-stream, application/json"}
    response = await http.post(default_gateway.url, json=request, headers=streamed)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    priming, *rest = sse_events(response.text)
    assert priming.get("id"), response.text
    assert priming.get("data", "") == ""
    assert priming.get("retry") == "1000"
    assert [json.loads(event["data"])["id"] for event in rest] == [7]

    headers = {**session, "Accept": "text/event-stream", "Last-Event-ID": priming["id"]}
    replayed: dict[str, Any] = {}
    async with http.stream("GET", default_gateway.url, headers=headers) as stream:
        assert stream.status_code == 200
        with anyio.fail_after(10):
            async for line in stream.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    replayed = json.loads(line[5:])
                    break
    assert replayed["id"] == 7
    assert "units_convert" in {tool["name"] for tool in replayed["result"]["tools"]}
