"""Sessions that survive a replica: three real `mcp-agg serve` replicas sharing a
`session_secret` behind a real HAProxy (deploy/haproxy.cfg, round robin, no
stickiness), spoken to by fastmcp's `Client` pinned to the handshake era and by httpx.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastmcp import Client

from mcp_agg.security.sessionids import SessionSealer, Ticket
from tests.e2e.fleet import Fleet, fleet, redis_server
from tests.e2e.procs import HANDSHAKE, demo_servers, open_session, session_headers

pytestmark = pytest.mark.e2e

SECRET = "e2e-fleet-session-secret-0123456789abcdef"
LIST_TOOLS = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}


def config(folder: Path, *lines: str) -> Path:
    path = folder / "servers.toml"
    path.write_text(
        "[gateway]\nconnect_timeout = 60\n"
        + "".join(f"{line}\n" for line in lines)
        + demo_servers(folder)
    )
    return path


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three replicas sharing a session secret and a Redis store."""
    folder = tmp_path_factory.mktemp("fleet-sessions")
    with redis_server() as redis:
        path = config(
            folder,
            'session_secret = "${MCP_AGG_SESSION_SECRET}"',
            f'[gateway.store]\nurl = "{redis.url}"',
        )
        with fleet(path, env={"MCP_AGG_SESSION_SECRET": SECRET}) as running:
            yield running


async def tool_calls(http: httpx.AsyncClient, url: str) -> float:
    """The tools/call requests a replica counted (its /metrics)."""
    text = (await http.get(url.removesuffix("/mcp") + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mcp_agg_tool_calls_total{")
    )


async def test_one_session_is_served_by_every_replica(sealed: Fleet) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        before = [await tool_calls(http, sealed.replica_url(i)) for i in range(3)]
        async with Client(sealed.url, mode="legacy", timeout=30) as client:
            assert client.protocol_version == HANDSHAKE
            tools = {tool.name for tool in await client.list_tools()}
            assert {"units_add", "notes_add_note"} <= tools
            for i in range(6):  # round robin: at least two of these on each replica
                result = await client.call_tool("units_add", {"a": i, "b": 1})
                assert result.data == i + 1
            await client.call_tool("notes_add_note", {"title": "fleet", "body": "three"})
            resources = await client.list_resources()
            index = next(r for r in resources if str(r.uri).endswith("index"))
            contents = await client.read_resource(index.uri)
            assert "fleet" in getattr(contents[0], "text", "")
            prompts = await client.list_prompts()
            prompt = await client.get_prompt(prompts[0].name, {"title": "fleet"})
            assert prompt.messages
        after = [await tool_calls(http, sealed.replica_url(i)) for i in range(3)]
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert all(n >= 1 for n in served), f"tool calls per replica: {served}"
    assert sum(served) == 7


def bit_flipped(session_id: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(session_id))
    raw[len(raw) // 2] ^= 0x04
    return base64.urlsafe_b64encode(raw).decode()


def other_secret(_: str) -> str:
    ticket = Ticket({"protocolVersion": HANDSHAKE, "capabilities": {}}, HANDSHAKE, None)
    return SessionSealer("not-this-fleets-secret-but-long-enough").seal(ticket)


@pytest.mark.parametrize(
    "forge",
    [bit_flipped, other_secret, lambda sid: sid[:-8] + "AAAAAAA=", lambda sid: "f" * 32],
    ids=["bit flipped", "another secret", "truncated", "uuid-like"],
)
async def test_a_forged_id_gets_404_everywhere(sealed: Fleet, forge: Any) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        genuine = (await open_session(http, sealed.url, "forger"))["Mcp-Session-Id"]
        forged = session_headers(forge(genuine))
        for url in [sealed.url, *(sealed.replica_url(i) for i in range(3))]:
            # The genuine id is served everywhere, so a 404 is the forgery's.
            good = await http.post(url, json=LIST_TOOLS, headers=session_headers(genuine))
            assert good.status_code == 200, (url, good.text)
            refused = await http.post(url, json=LIST_TOOLS, headers=forged)
            assert refused.status_code == 404, (url, refused.text)
            assert refused.json()["error"]["message"] == "Session not found"


async def test_a_deleted_session_is_refused_on_every_replica(sealed: Fleet) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, sealed.replica_url(0), "revoker")
        for i in range(3):
            response = await http.post(sealed.replica_url(i), json=LIST_TOOLS, headers=headers)
            assert response.status_code == 200
        assert (await http.delete(sealed.replica_url(1), headers=headers)).status_code == 200
        for url in [sealed.url, *(sealed.replica_url(i) for i in range(3))]:
            refused = await http.post(url, json=LIST_TOOLS, headers=headers)
            assert refused.status_code == 404, url


async def test_without_a_session_secret_sessions_stay_per_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with fleet(config(tmp_path_factory.mktemp("fleet-plain")), replicas=2) as running:
        async with httpx.AsyncClient(timeout=30) as http:
            headers = await open_session(http, running.replica_url(0), "plain")
            assert len(headers["Mcp-Session-Id"]) == 32  # the SDK's uuid4().hex
            here = await http.post(running.replica_url(0), json=LIST_TOOLS, headers=headers)
            assert here.status_code == 200
            there = await http.post(running.replica_url(1), json=LIST_TOOLS, headers=headers)
            assert there.status_code == 404
