"""Rate limits, bulkheads and size limits with real backend processes.

Most tests run the gateway in-process (to read breaker, health and bulkhead state) behind
an MCP client on FastMCP's in-memory transport; one drives a real `mcp-agg serve
--transport http`. The backends are `faulty` processes, which log every execution, so a
test can tell a refused call from one that ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext

from mcp_agg.config import load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.front.server import build_server
from mcp_agg.resilience.breaker import BreakerState
from mcp_agg.security.limits import RETRY_AFTER_META
from tests.e2e.conftest import Faulty
from tests.e2e.procs import eventually, served_gateway
from tests.e2e.test_resilience import stdio_replicas, text

pytestmark = pytest.mark.e2e

GATEWAY = """
[gateway]
connect_timeout = 60
request_timeout = 30
health_interval = 2
unhealthy_threshold = 3
healthy_threshold = 2
"""


@asynccontextmanager
async def running(
    folder: Path, toml: str, middleware: Middleware | None = None
) -> AsyncIterator[tuple[Gateway, Client[Any]]]:
    config = folder / "servers.toml"
    config.write_text(toml)
    gateway = Gateway(load_config(config))
    server = build_server(gateway)
    if middleware is not None:
        server.add_middleware(middleware)
    async with Client(server, timeout=60) as client:
        yield gateway, client


def keys(faulty: Faulty, tool: str) -> list[str]:
    return [line[2] for line in faulty.executions(tool)]


async def assert_replicas_untouched(gateway: Gateway, *, probes: bool = True) -> None:
    """Refusals never reach a breaker or health: every replica is as good as new."""
    for upstream in gateway.upstreams:
        assert upstream.breaker.state is BreakerState.CLOSED, upstream.id
        assert upstream.stats.failures == 0, upstream.id
        assert upstream.health.healthy, upstream.id
    if probes:  # and health probes go on passing
        seen = {u.id: u.health.last_probe_at for u in gateway.upstreams}
        await eventually(
            lambda: all(
                u.health.last_probe_at != seen[u.id] and u.health.last_probe_ok
                for u in gateway.upstreams
            ),
            "a passing health probe of every replica",
            20,
        )
        assert all(u.health.healthy for u in gateway.upstreams)


async def until_refused(client: Client[Any], key: str) -> mcp_types.CallToolResult:
    """Call `svc_read` until the rate limit refuses a call (deadline 10 s): however slow
    the machine, calls made faster than the refill run out of tokens."""
    with anyio.fail_after(10):
        for i in range(1000):
            result = await client.call_tool_mcp("svc_read", {"key": f"{key}{i}"})
            if result.is_error:
                return result
    raise AssertionError("never refused")


async def until_admitted(client: Client[Any], tool: str, args: dict[str, Any]) -> int:
    """Call until a call is admitted (deadline 10 s); the number of refusals before."""
    refusals = 0
    with anyio.fail_after(10):
        while True:
            result = await client.call_tool_mcp(tool, args)
            if not result.is_error:
                return refusals
            assert "rate limit for client" in text(result), text(result)
            refusals += 1
            await anyio.sleep(0.02)


# ---------------------------------------------------------------------------- rate limits

RATE = """
[gateway.rate_limit]
requests_per_second = 4
burst = 2

[gateway.rate_limit.tools]
"svc_echo" = { requests_per_second = 0.001, burst = 1 }
"""


async def test_rate_limit_refuses_after_the_burst_and_recovers(
    tmp_path: Path, faulty: Faulty
) -> None:
    toml = GATEWAY + RATE + stdio_replicas(faulty, "svc", ["r1"])
    async with running(tmp_path, toml) as (gateway, client):
        refused = await until_refused(client, "burst")
        assert text(refused).startswith(
            "svc_read: rate limit for client 'stdio' exceeded: retry in "
        )
        assert refused.meta is not None
        retry_after = refused.meta[RETRY_AFTER_META]
        assert 0 < retry_after <= 0.25
        admitted = keys(faulty, "read")
        assert len(admitted) >= 2  # the burst, and what refilled while the calls ran
        refused_key = f"burst{len(admitted)}"
        assert refused_key not in admitted  # the refused call never reached the backend

        # The per-tool override has its own bucket: the spent default one does not matter.
        assert (await client.call_tool_mcp("svc_echo", {"text": "a"})).is_error is False
        echo = await client.call_tool_mcp("svc_echo", {"text": "b"})
        assert echo.is_error is True
        assert "on tools 'svc_echo'" in text(echo)

        # A token comes back after a fraction of a second.
        await until_admitted(client, "svc_read", {"key": "after"})
        assert keys(faulty, "read") == [*admitted, "after"]
        await assert_replicas_untouched(gateway)


class _SeesCalls(Middleware):
    """Middleware that takes part in calls: FastMCP's own call path is used."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_call_tool(
        self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
    ) -> Any:
        self.calls.append(context.message.name)
        return await call_next(context)


async def test_limits_hold_on_fastmcps_call_path_too(tmp_path: Path, faulty: Faulty) -> None:
    toml = GATEWAY + "max_argument_bytes = 100\n" + RATE + stdio_replicas(faulty, "svc", ["r1"])
    middleware = _SeesCalls()
    async with running(tmp_path, toml, middleware) as (_, client):
        refused = await until_refused(client, "m")
        assert "rate limit for client 'stdio' exceeded" in text(refused)
        assert refused.meta is not None
        assert refused.meta[RETRY_AFTER_META] > 0
        large = await client.call_tool_mcp("svc_echo", {"text": "x" * 200})
        assert large.is_error is True
        assert "over max_argument_bytes (100 bytes)" in text(large)
        admitted = keys(faulty, "read")
        assert len(admitted) >= 2
        # Every call took FastMCP's path (the middleware saw it), refused ones too.
        assert middleware.calls == ["svc_read"] * (len(admitted) + 1) + ["svc_echo"]
        assert keys(faulty, "echo") == []


# ---------------------------------------------------------------------------- bulkheads


def bulkhead_servers(faulty: Faulty) -> str:
    """`tight` (two replicas, one slot, a short queue) and `roomy` (one slot, a long one)."""
    return stdio_replicas(
        faulty, "tight", ["t1", "t2"], "max_concurrent = 1\nqueue_timeout = 0.2"
    ) + stdio_replicas(faulty, "roomy", ["q1"], "max_concurrent = 1\nqueue_timeout = 30")


async def test_bulkhead_refuses_a_call_beyond_max_concurrent_after_queue_timeout(
    tmp_path: Path, faulty: Faulty
) -> None:
    for replica in ("t1", "t2"):
        faulty.mode(replica, "hold")
    async with running(tmp_path, GATEWAY + bulkhead_servers(faulty)) as (gateway, client):
        tight = gateway.groups["tight"]
        held: list[mcp_types.CallToolResult] = []

        async def hold() -> None:
            held.append(await client.call_tool_mcp("tight_write", {"key": "held"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await eventually(lambda: "held" in keys(faulty, "write"), "the held call to run", 10)
            # One replica is busy, the other idle: the slot is the server's, not a replica's.
            refused = await client.call_tool_mcp("tight_write", {"key": "refused"})
            assert refused.is_error is True
            assert text(refused) == (
                "tight_write: server 'tight' is busy: its max_concurrent (1) calls stayed "
                "in flight for queue_timeout (0.2 s); call refused"
            )
            assert tight.bulkhead is not None
            assert tight.bulkhead.in_use == 1
            for replica in ("t1", "t2"):
                faulty.mode(replica, "ok")
        assert held[0].is_error is False, text(held[0])
        assert keys(faulty, "write") == ["held"]  # the refused call never ran
        assert tight.bulkhead.in_use == 0
        await assert_replicas_untouched(gateway)


async def test_bulkhead_queued_call_runs_when_a_slot_frees_in_time(
    tmp_path: Path, faulty: Faulty
) -> None:
    faulty.mode("q1", "hold")
    async with running(tmp_path, GATEWAY + bulkhead_servers(faulty)) as (gateway, client):
        bulkhead = gateway.groups["roomy"].bulkhead
        assert bulkhead is not None
        results: dict[str, mcp_types.CallToolResult] = {}

        async def call(key: str) -> None:
            results[key] = await client.call_tool_mcp("roomy_read", {"key": key})

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "first")
            await eventually(lambda: "first" in keys(faulty, "read"), "the first call to run", 10)
            tg.start_soon(call, "queued")
            await eventually(lambda: bulkhead.waiting == 1, "the second call to queue", 10)
            assert keys(faulty, "read") == ["first"]
            faulty.mode("q1", "ok")  # the first call returns and frees its slot
        assert results["first"].is_error is False, text(results["first"])
        assert results["queued"].is_error is False, text(results["queued"])
        # One slot per call, however long it queued; the retry-free path took one attempt.
        assert keys(faulty, "read") == ["first", "queued"]
        assert bulkhead.in_use == bulkhead.waiting == 0
        await assert_replicas_untouched(gateway, probes=False)


# ---------------------------------------------------------------------------- sizes


async def test_oversized_arguments_and_results_are_refused(tmp_path: Path, faulty: Faulty) -> None:
    toml = GATEWAY + "max_argument_bytes = 200\nmax_result_bytes = 300\n"
    toml += stdio_replicas(faulty, "svc", ["r1"])
    async with running(tmp_path, toml) as (gateway, client):
        large = await client.call_tool_mcp("svc_echo", {"text": "x" * 500})
        assert large.is_error is True
        assert text(large) == (
            "svc_echo: arguments of 511 bytes is over max_argument_bytes (200 bytes)"
        )
        assert keys(faulty, "echo") == []  # never reached the backend

        # Small arguments, a large answer: the backend ran, its result is withheld.
        answer = await client.call_tool_mcp("svc_echo", {"text": "y" * 150})
        assert answer.is_error is True
        assert "svc_echo: result of " in text(answer)
        assert "bytes is over max_result_bytes (300 bytes)" in text(answer)
        assert "y" * 150 not in text(answer)
        assert keys(faulty, "echo") == ["150"]

        fine = await client.call_tool_mcp("svc_echo", {"text": "small"})
        assert fine.is_error is False
        assert text(fine) == "small"
        await assert_replicas_untouched(gateway)


# ---------------------------------------------------------------------------- HTTP front


@contextmanager
def http_gateway(folder: Path, toml: str) -> Iterator[str]:
    config = folder / "servers.toml"
    config.write_text(toml)
    with served_gateway(config, "--log-level", "warning") as (url, _):
        yield url


async def test_limits_through_a_served_http_gateway(tmp_path: Path, faulty: Faulty) -> None:
    toml = GATEWAY + "max_argument_bytes = 200\n" + RATE + stdio_replicas(faulty, "svc", ["r1"])
    with http_gateway(tmp_path, toml) as url:
        async with Client(StreamableHttpTransport(url), timeout=30) as client:
            refused = await until_refused(client, "h")
            assert "rate limit for client 'anonymous' exceeded: retry in " in text(refused)
            assert refused.meta is not None
            assert refused.meta[RETRY_AFTER_META] > 0
            admitted = keys(faulty, "read")
            assert len(admitted) >= 2

            await until_admitted(client, "svc_read", {"key": "after"})
            large = await client.call_tool_mcp("svc_echo", {"text": "x" * 500})
            assert large.is_error is True
            assert "over max_argument_bytes (200 bytes)" in text(large)
    assert keys(faulty, "read") == [*admitted, "after"]
    assert keys(faulty, "echo") == []


AUTH = """
[gateway.auth]
type = "bearer"

[[gateway.auth.tokens]]
token = "alice-token-for-tests"
client_id = "alice"
roles = ["all"]

[[gateway.auth.tokens]]
token = "bob-token-for-tests"
client_id = "bob"
roles = ["all"]

[gateway.roles.all]
allow = ["*"]

[gateway.rate_limit]
requests_per_second = 0.01
burst = 1
"""


async def test_rate_limit_is_per_authenticated_client(tmp_path: Path, faulty: Faulty) -> None:
    toml = GATEWAY + AUTH + stdio_replicas(faulty, "svc", ["r1"])
    with http_gateway(tmp_path, toml) as url:

        def as_client(name: str) -> Client[Any]:
            headers = {"Authorization": f"Bearer {name}-token-for-tests"}
            return Client(StreamableHttpTransport(url, headers=headers), timeout=30)

        async with as_client("alice") as alice, as_client("bob") as bob:
            assert (await alice.call_tool_mcp("svc_read", {"key": "a1"})).is_error is False
            refused = await alice.call_tool_mcp("svc_read", {"key": "a2"})
            assert refused.is_error is True
            assert "rate limit for client 'alice' exceeded: retry in " in text(refused)
            # Bob's bucket is his own.
            assert (await bob.call_tool_mcp("svc_read", {"key": "b1"})).is_error is False
            assert "client 'bob'" in text(await bob.call_tool_mcp("svc_read", {"key": "b2"}))
    assert keys(faulty, "read") == ["a1", "b1"]
