"""Shared state in Redis, with real processes: three replicas behind HAProxy and one
redis-server (tests/e2e/fleet.py). A client's rate limit holds for the fleet, not per
replica; a server registered through one replica's admin API is served by every
replica and by one started afterwards, and unregistering it reaches them all; a Redis
killed mid-run leaves calls going on (`store_failure = "open"`) or refuses the limited
ones (`"closed"`), and the replica's log says which.

Calls are modern-era (2026-07-28: fastmcp's `Client` default): each request carries its
context, so any replica serves it. Handshake-era sessions across replicas are the
sessions' tests.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.fleet import Fleet, RedisServer, fleet, redis_server
from tests.e2e.procs import SERVERS, demo_servers, eventually, served_gateway

pytestmark = pytest.mark.e2e

TOKEN = "e2e-admin-token-0123456789"
#: The units server's tools get 5 calls, then one every 10 s: a test's calls stay
#: within the burst's refill time.
RATE = """
[gateway.rate_limit]
requests_per_second = 1000
burst = 1000
[gateway.rate_limit.tools]
"units_*" = { requests_per_second = 0.1, burst = 5 }
"""
SHARED = {"name": "shared", "command": "python", "args": [str(SERVERS / "units.py")]}


def write_config(folder: Path, store: str) -> Path:
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 30
[gateway.store]
url = "${{REDIS_URL}}"
{store}
[gateway.admin]
token = "${{ADMIN_TOKEN}}"
{RATE}
{demo_servers(folder, "units")}"""
    )
    return config


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="module")
def env(redis: RedisServer) -> dict[str, str]:
    return {"REDIS_URL": redis.url, "ADMIN_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[Fleet]:
    config = write_config(tmp_path_factory.mktemp("fleet-store"), "")
    with fleet(config, env=env) as running:
        yield running


def client(url: str) -> Client[Any]:
    return Client(StreamableHttpTransport(url), timeout=30)


async def add(url: str, tool: str = "units_add") -> mcp_types.CallToolResult:
    async with client(url) as c:
        return await c.call_tool_mcp(tool, {"a": 1, "b": 2})


def text(result: mcp_types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


def admin(url: str) -> tuple[str, dict[str, str]]:
    return url.removesuffix("/mcp") + "/admin/servers", {"Authorization": f"Bearer {TOKEN}"}


async def test_a_clients_rate_limit_holds_across_the_fleet(replicas: Fleet) -> None:
    # One client through HAProxy: round robin spreads its calls over the 3 replicas.
    async with client(replicas.url) as c:
        results = [await c.call_tool_mcp("units_add", {"a": 1, "b": i}) for i in range(15)]
    refused = [r for r in results if r.is_error]
    assert len(results) - len(refused) == 5  # the burst, once for the fleet: not 15
    assert all("rate limit for client 'anonymous' on tools 'units_*'" in text(r) for r in refused)


async def test_a_registered_server_is_served_by_every_replica_and_a_later_one(
    replicas: Fleet, env: dict[str, str]
) -> None:
    urls = [replicas.replica_url(i) for i in range(len(replicas.ports))]
    where, headers = admin(urls[0])
    async with httpx.AsyncClient(timeout=60) as http:
        bad = await http.post(where, json={"name": "bad", "command": 3}, headers=headers)
        assert bad.status_code == 400
        answer = await http.post(where, json=SHARED, headers=headers)
        assert answer.status_code == 201, answer.text
        assert answer.json()["connected"] is True

        async def served(url: str) -> bool:
            return not (await add(url, "shared_add")).is_error

        for url in urls:
            await eventually(lambda url=url: served(url), f"shared_add on {url}", timeout=30)

        # A replica started afterwards runs what the store has.
        with served_gateway(replicas.config, env=env) as (late, _proc):
            await eventually(lambda: served(late), "shared_add on a new replica", timeout=30)
            for url in (*urls, late):
                listed = await http.get(admin(url)[0], headers=headers)
                assert "bad" not in {s["name"] for s in listed.json()["servers"]}

            gone = await http.delete(f"{admin(urls[1])[0]}/shared", headers=headers)
            assert gone.status_code == 200, gone.text

            async def unknown(url: str) -> bool:
                result = await add(url, "shared_add")
                return result.is_error and "unknown tool" in text(result).lower()

            for url in (*urls, late):
                await eventually(lambda url=url: unknown(url), f"no shared_add on {url}")


@pytest.mark.parametrize(
    ("failure", "log", "after"),
    [
        pytest.param(
            "open",
            "rate limits per replica until it is back (store_failure = open)",
            None,
            id="open",
        ),
        pytest.param(
            "closed",
            "rate-limited calls refused until it is back (store_failure = closed)",
            "cannot be checked (store redis://127.0.0.1:{port}/0 unreachable",
            id="closed",
        ),
    ],
)
async def test_redis_killed_mid_run(
    tmp_path: Path, failure: Literal["open", "closed"], log: str, after: str | None
) -> None:
    stderr = tmp_path / "stderr.log"
    with (
        redis_server() as redis,
        stderr.open("wb") as errors,
        served_gateway(
            write_config(tmp_path, f'store_failure = "{failure}"'),
            env={"REDIS_URL": redis.url, "ADMIN_TOKEN": TOKEN},
            stderr=errors,
        ) as (url, proc),
    ):
        async with client(url) as c:
            assert not (await c.call_tool_mcp("units_add", {"a": 1, "b": 2})).is_error
            os.kill(redis.proc.pid, signal.SIGKILL)
            results = [await c.call_tool_mcp("units_add", {"a": 1, "b": i}) for i in range(3)]
        assert proc.poll() is None
        warning = f"WARNING mcp_agg.store.failsafe: store redis://127.0.0.1:{redis.port}/0 "
        logged = await eventually(
            lambda: [ln for ln in stderr.read_text().splitlines() if warning in ln],
            "the store's warning",
        )
        assert len(logged) == 1
        assert logged[0].endswith(log)
        if after is None:  # open: this replica's own bucket, with its burst
            assert not any(r.is_error for r in results)
        else:
            assert all(r.is_error for r in results)
            assert all(after.format(port=redis.port) in text(r) for r in results)
            assert all('call refused (store_failure = "closed")' in text(r) for r in results)
