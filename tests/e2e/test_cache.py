"""The response cache with a real backend whose answers change on every call
(tests/e2e/backends/counting.py): a cached call answers the same within its ttl and a
fresh one after it, concurrent calls make one backend call, a client can ask for fresh
data, the backend's tool list changing forgets its entries, two users of a `private`
entry never share one, and a resource read is kept as long as its backend's cache hints
say; with `[gateway.store]` the replicas of a fleet share the entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from tests.e2e.fleet import redis_server
from tests.e2e.procs import BACKENDS, PYTHON, eventually, served_gateway

pytestmark = pytest.mark.e2e


def write_config(tmp_path: Path, cache: str, gateway: str = "") -> Path:
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""{gateway}
[[servers]]
name = "c"
command = "python"
args = ["{BACKENDS / "counting.py"}"]
cache = {cache}
# The handshake era: the backend's unsolicited tools/list_changed reaches the gateway.
protocol = "legacy"
""",
        encoding="utf-8",
    )
    return config


async def answer(client: Client, tool: str, meta: dict[str, Any] | None = None) -> str:
    result = await client.call_tool_mcp(tool, {}, meta=meta)
    assert not result.is_error, result
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_a_cached_call_until_its_ttl_a_bypass_and_list_changed(tmp_path: Path) -> None:
    config = write_config(tmp_path, '{ tools = ["get_*"], ttl = 1 }')
    transport = StdioTransport(PYTHON, ["-m", "mcp_agg", "serve", "-c", str(config)])
    async with Client(transport, mode="legacy", timeout=30) as client:
        first = await answer(client, "c_get_count")
        assert await answer(client, "c_get_count") == first  # from the cache
        # Named by the operator but not read-only: never cached.
        unmarked = await answer(client, "c_get_unmarked")
        assert await answer(client, "c_get_unmarked") != unmarked

        fresh = await answer(client, "c_get_count", {"mcp-agg/cache": False})
        assert fresh != first
        assert await answer(client, "c_get_count") == fresh  # kept for the next call

        async def expired() -> bool:
            return await answer(client, "c_get_count") != fresh

        await eventually(expired, "the entry expired after its ttl", timeout=10)

        kept = await answer(client, "c_get_count")
        assert await answer(client, "c_get_count") == kept
        await client.call_tool_mcp("c_grow", {"name": "get_more"})

        async def grown() -> bool:
            return "c_get_more" in {tool.name for tool in await client.list_tools()}

        await eventually(grown, "the new tool listed")
        assert await answer(client, "c_get_count") != kept  # the list changed: forgotten


async def test_concurrent_calls_make_one_backend_call(tmp_path: Path) -> None:
    config = write_config(tmp_path, '{ tools = ["get_*"], ttl = 60 }')
    transport = StdioTransport(PYTHON, ["-m", "mcp_agg", "serve", "-c", str(config)])
    async with Client(transport, mode="legacy", timeout=30) as client:
        answers: list[str] = []

        async def slow() -> None:
            result = await client.call_tool_mcp("c_get_count", {"delay": 0.5})
            answers.append(str(result.content[0].text))  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(slow)
        assert answers == ["1"] * 8
        # Another key: the backend's second call (it counted one for the eight).
        assert await answer(client, "c_get_count") == "2"


async def test_private_entries_are_never_shared_between_users(tmp_path: Path) -> None:
    tokens = "".join(
        f'\n[[gateway.auth.tokens]]\ntoken = "token-{who}"\nclient_id = "{who}"\nroles = ["all"]\n'
        for who in ("alice", "bob")
    )
    gateway = f'[gateway.roles.all]\nallow = ["*"]\n\n[gateway.auth]\ntype = "bearer"\n{tokens}'
    config = write_config(tmp_path, '{ tools = ["get_*"], ttl = 60 }', gateway)
    with served_gateway(config) as (url, _):

        async def ask(who: str) -> str:
            headers = {"Authorization": f"Bearer token-{who}"}
            async with Client(StreamableHttpTransport(url, headers=headers), timeout=30) as c:
                return await answer(c, "c_get_count")

        alice = await ask("alice")
        bob = await ask("bob")
        assert bob != alice
        assert [await ask("alice"), await ask("bob")] == [alice, bob]  # each their own

        async with httpx.AsyncClient() as http:
            scraped = await http.get(
                url.removesuffix("/mcp") + "/metrics",
                headers={"Authorization": "Bearer token-alice"},
            )
        metrics = scraped.text
        assert "mcp_agg_cache_hits_total 2.0" in metrics, metrics
        assert "mcp_agg_cache_misses_total 2.0" in metrics, metrics


async def test_a_read_is_kept_as_the_backends_hints_allow(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[[servers]]
name = "hinted"
command = "python"
args = ["{BACKENDS / "counting.py"}", "--ttl", "60"]
protocol = "modern"

[[servers]]
name = "plain"
command = "python"
args = ["{BACKENDS / "counting.py"}"]
protocol = "legacy"
""",
        encoding="utf-8",
    )
    transport = StdioTransport(PYTHON, ["-m", "mcp_agg", "serve", "-c", str(config)])

    async def read(client: Client, uri: str, meta: dict[str, Any] | None = None) -> str:
        result = await client.read_resource_mcp(uri, meta)
        return str(result.contents[0].text)  # type: ignore[union-attr]

    async with Client(transport, mode="legacy", timeout=30) as client:
        uris = {str(r.uri) for r in await client.list_resources()}
        # The first server keeps the URI; the second's is rewritten (Resource URIs).
        hinted, plain = "count://reads", "count://plain/reads"
        assert {hinted, plain} <= uris
        assert [await read(client, hinted), await read(client, hinted)] == ["1", "1"]
        assert await read(client, hinted, {"mcp-agg/cache": False}) == "2"
        assert await read(client, hinted) == "2"
        # No hints (the handshake era): never kept.
        assert [await read(client, plain), await read(client, plain)] != ["1", "1"]


async def test_replicas_share_entries_through_redis(tmp_path: Path) -> None:
    """Two gateways on one Redis, each with its own counting backend: an answer one
    kept is the other's answer too (its own backend would have said 1)."""
    with redis_server() as redis:
        gateway = f'[gateway.store]\nurl = "{redis.url}"\n'
        config = write_config(
            tmp_path, '{ tools = ["get_*"], ttl = 60, scope = "public" }', gateway
        )
        with served_gateway(config) as (first, _), served_gateway(config) as (second, _):
            async with Client(first, timeout=30) as client:
                assert await answer(client, "c_get_count") == "1"
                assert await answer(client, "c_get_count", {"mcp-agg/cache": False}) == "2"
            async with Client(second, timeout=30) as client:
                assert await answer(client, "c_get_count") == "2"
