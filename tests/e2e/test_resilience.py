"""Resilience with real backend processes and injected faults.

The gateway runs in-process (so the tests can read breaker and health state) and is
driven by an MCP client through FastMCP's in-memory transport; every backend is a real
process, killed, hung or slowed down for real.
"""

from __future__ import annotations

import collections
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from fastmcp import Client

from mcp_agg.config import load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.front.server import build_server
from mcp_agg.resilience.breaker import BreakerState
from tests.e2e.conftest import Faulty
from tests.e2e.faultproxy import FaultProxy, fault_proxy
from tests.e2e.procs import (
    PYTHON,
    eventually,
    free_port,
    kill_group,
    port_open,
    wait_until,
)

pytestmark = pytest.mark.e2e


def stdio_replicas(faulty: Faulty, name: str, replicas: list[str], extra: str = "") -> str:
    return "".join(
        f"""
[[servers]]
name = "{name}"
command = "python"
args = {faulty.args(replica)!r}
{extra}
"""
        for replica in replicas
    ).replace("'", '"')


@contextmanager
def http_replicas(faulty: Faulty, count: int) -> Iterator[list[int]]:
    """`count` faulty backends over HTTP (h0, h1, ...), started by the test; their ports."""
    ports = [free_port() for _ in range(count)]
    procs = [
        subprocess.Popen(
            [PYTHON, *faulty.args(f"h{i}"), "--transport", "http", "--port", str(port)],
            start_new_session=True,
        )
        for i, port in enumerate(ports)
    ]
    try:
        for port in ports:
            wait_until(lambda p=port: port_open(p), 30, f"backend on {port}")
        yield ports
    finally:
        for proc in procs:
            kill_group(proc)


def proxied(name: str, *proxies: FaultProxy) -> str:
    """Replicas of `name`, one behind each fault proxy."""
    return "".join(
        f'\n[[servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{proxy.port}/mcp"\n'
        for proxy in proxies
    )


@asynccontextmanager
async def running(folder: Path, toml: str) -> AsyncIterator[tuple[Gateway, Client[Any]]]:
    config = folder / "servers.toml"
    config.write_text(toml)
    gateway = Gateway(load_config(config))
    async with Client(build_server(gateway), timeout=60) as client:
        yield gateway, client


def text(result: mcp_types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


GATEWAY = """
[gateway]
connect_timeout = 60
request_timeout = {request_timeout}
health_interval = {health_interval}
balancer = "{balancer}"
unhealthy_threshold = 2
healthy_threshold = 2

[gateway.retry]
attempts = 3
base_delay = 0.05
max_delay = 0.2
attempt_timeout = {attempt_timeout}

[gateway.breaker]
failure_threshold = {failure_threshold}
reset_timeout = {reset_timeout}
"""


def gateway_table(**overrides: Any) -> str:
    values: dict[str, Any] = {
        "request_timeout": 20,
        "health_interval": 0.5,
        "balancer": "round-robin",
        "attempt_timeout": 5,
        "failure_threshold": 3,
        "reset_timeout": 60,
    }
    values.update(overrides)
    return GATEWAY.format(**values)


async def test_killing_a_replica_mid_stream_loses_no_call(tmp_path: Path, faulty: Faulty) -> None:
    toml = gateway_table() + stdio_replicas(faulty, "svc", ["r1", "r2", "r3"])
    async with running(tmp_path, toml) as (gateway, client):
        results: list[mcp_types.CallToolResult] = []

        async def stream(worker: int) -> None:
            for i in range(40):
                results.append(await client.call_tool_mcp("svc_read", {"key": f"{worker}-{i}"}))
                if len(results) == 60:
                    faulty.kill("r2")

        async with anyio.create_task_group() as tg:
            for worker in range(4):
                tg.start_soon(stream, worker)

        failed = [text(r) for r in results if r.is_error]
        assert failed == []
        assert len(results) == 160
        served = collections.Counter(text(r) for r in results)
        assert served[f"r2-{faulty.tag}"] > 0  # r2 did serve before it was killed
        # A call cut off by the kill ran again elsewhere with the same idempotency key.
        by_key: dict[str, set[str]] = collections.defaultdict(set)
        for _, _, key, idempotency in faulty.executions("read"):
            by_key[key].add(idempotency)
        assert all(len(keys) == 1 for keys in by_key.values())
        # ... and the killed replica was respawned.
        r2 = next(u for u in gateway.upstreams if u.id == "svc-2")
        await eventually(lambda: r2.stats.connects >= 2 and r2.available, "r2 respawned", 30)


async def test_non_idempotent_call_runs_at_most_once(tmp_path: Path, faulty: Faulty) -> None:
    toml = gateway_table() + stdio_replicas(faulty, "svc", ["r1", "r2"])
    async with running(tmp_path, toml) as (_, client):
        result = await client.call_tool_mcp("svc_write_then_die", {"key": "once"})
        assert result.is_error is True
        assert "svc_write_then_die" in text(result)
        assert len(faulty.executions("write_then_die")) == 1


async def test_hung_replica_fails_over_within_the_deadline_and_its_breaker_opens(
    tmp_path: Path, faulty: Faulty
) -> None:
    faulty.mode("r1", "hang")
    toml = gateway_table(attempt_timeout=0.5, failure_threshold=2, request_timeout=10)
    toml += stdio_replicas(faulty, "svc", ["r1", "r2"])
    async with running(tmp_path, toml) as (gateway, client):
        for i in range(8):
            result = await client.call_tool_mcp("svc_read", {"key": f"k{i}"})
            assert result.is_error is False, text(result)
            assert text(result) == f"r2-{faulty.tag}"
        r1 = gateway.upstreams[0]
        assert r1.breaker.state is BreakerState.OPEN
        hung = [line for line in faulty.executions("read") if line[0] == f"r1-{faulty.tag}"]
        assert len(hung) == 2  # after two timeouts the breaker stopped sending to r1
        retried = {line[3] for line in faulty.executions("read") if line[2] in {h[2] for h in hung}}
        assert len(retried) == len(hung)  # each retry kept its call's idempotency key


async def test_breaker_opens_half_opens_and_closes(tmp_path: Path, faulty: Faulty) -> None:
    faulty.mode("r1", "hang")
    toml = gateway_table(
        attempt_timeout=0.3, failure_threshold=2, reset_timeout=1, request_timeout=2
    ).replace("attempts = 3", "attempts = 1") + stdio_replicas(faulty, "svc", ["r1"])
    async with running(tmp_path, toml) as (gateway, client):
        breaker = gateway.upstreams[0].breaker
        for i in range(2):
            result = await client.call_tool_mcp("svc_read", {"key": f"hang{i}"})
            assert result.is_error is True
        assert breaker.state is BreakerState.OPEN
        refused = await client.call_tool_mcp("svc_read", {"key": "refused"})
        assert refused.is_error is True
        assert "circuit open" in text(refused)
        assert not [line for line in faulty.executions("read") if line[2] == "refused"]

        faulty.mode("r1", "ok")
        await eventually(lambda: breaker.state is BreakerState.HALF_OPEN, "half-open", 5)
        probe = await client.call_tool_mcp("svc_read", {"key": "probe"})
        assert probe.is_error is False
        assert breaker.state is BreakerState.CLOSED


async def test_tool_errors_never_open_the_breaker(tmp_path: Path, faulty: Faulty) -> None:
    toml = gateway_table(failure_threshold=2) + stdio_replicas(faulty, "svc", ["r1"])
    async with running(tmp_path, toml) as (gateway, client):
        for i in range(20):
            result = await client.call_tool_mcp("svc_fail", {"message": f"nope {i}"})
            assert result.is_error is True
            assert text(result) == f"nope {i}"
        replica = gateway.upstreams[0]
        assert replica.breaker.state is BreakerState.CLOSED
        assert replica.stats.failures == 0


async def test_all_replicas_down_fails_fast_without_hammering(tmp_path: Path) -> None:
    starts = tmp_path / "starts.log"
    dead = tmp_path / "dead.py"
    dead.write_text(f"open({str(starts)!r}, 'a').write('start\\n')\nraise SystemExit(1)\n")
    replicas = f'\n[[servers]]\nname = "down"\ncommand = "python"\nargs = ["{dead}"]\n' * 2
    toml = gateway_table(request_timeout=5).replace("connect_timeout = 20", "connect_timeout = 2")
    async with running(tmp_path, toml + replicas) as (_, client):
        tools = {t.name for t in await client.list_tools()}
        assert not any(name.startswith("down_") for name in tools)
        before = len(starts.read_text().splitlines())
        with anyio.fail_after(5):
            for _ in range(20):
                result = await client.call_tool_mcp("down_anything", {})
                assert result.is_error is True
        after = len(starts.read_text().splitlines())
        # Calls do not spawn or hit the dead replicas; only the reconnect backoff does.
        assert after - before <= 6


async def test_p2c_ewma_moves_traffic_away_from_a_slow_replica(
    tmp_path: Path, faulty: Faulty
) -> None:
    with (
        http_replicas(faulty, 2) as ports,
        fault_proxy(ports[0]) as slow,
        fault_proxy(ports[1]) as fast,
    ):
        toml = gateway_table(balancer="p2c-ewma", health_interval=0) + proxied("svc", slow, fast)
        async with running(tmp_path, toml) as (_, client):
            slow.set("latency", 0.15)
            served = collections.Counter()
            for i in range(60):
                result = await client.call_tool_mcp("svc_read", {"key": f"p{i}"})
                assert result.is_error is False
                served[text(result)] += 1
            assert served[f"h1-{faulty.tag}"] >= 48, served  # at least 80% to the fast one


async def test_hung_http_replica_behind_a_blackhole_fails_over(
    tmp_path: Path, faulty: Faulty
) -> None:
    with (
        http_replicas(faulty, 2) as ports,
        fault_proxy(ports[0]) as broken,
        fault_proxy(ports[1]) as healthy,
    ):
        toml = gateway_table(attempt_timeout=0.5, failure_threshold=2, health_interval=0)
        async with running(tmp_path, toml + proxied("svc", broken, healthy)) as (gateway, client):
            broken.set("blackhole")
            for i in range(6):
                result = await client.call_tool_mcp("svc_read", {"key": f"b{i}"})
                assert result.is_error is False, text(result)
                assert text(result) == f"h1-{faulty.tag}"
            assert gateway.upstreams[0].breaker.state is BreakerState.OPEN


async def test_stdio_backend_killed_between_calls_is_respawned(
    tmp_path: Path, faulty: Faulty
) -> None:
    toml = gateway_table() + stdio_replicas(faulty, "svc", ["r1"])
    async with running(tmp_path, toml) as (gateway, client):
        assert text(await client.call_tool_mcp("svc_read", {"key": "before"})) == f"r1-{faulty.tag}"
        faulty.kill("r1")
        replica = gateway.upstreams[0]
        await eventually(lambda: replica.stats.connects >= 2 and replica.available, "respawn", 30)
        result = await client.call_tool_mcp("svc_read", {"key": "after"})
        assert result.is_error is False
        assert text(result) == f"r1-{faulty.tag}"
        starts = [line for line in faulty.lines() if line[1] == "started"]
        assert len(starts) == 2


async def test_http_backend_restarted_on_the_same_port_is_reconnected(
    tmp_path: Path, faulty: Faulty
) -> None:
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [PYTHON, *faulty.args("h"), "--transport", "http", "--port", str(port)],
            start_new_session=True,
        )
        wait_until(lambda: port_open(port), 30, "the HTTP backend")
        return proc

    proc = start()
    try:
        toml = (
            gateway_table() + f'\n[[servers]]\nname = "svc"\nurl = "http://127.0.0.1:{port}/mcp"\n'
        )
        async with running(tmp_path, toml) as (gateway, client):
            assert (await client.call_tool_mcp("svc_read", {"key": "1"})).is_error is False
            kill_group(proc)
            replica = gateway.upstreams[0]
            await eventually(lambda: not replica.available, "the replica to notice", 10)
            proc = start()
            await eventually(
                lambda: replica.stats.connects >= 2 and replica.available, "reconnect", 30
            )
            result = await client.call_tool_mcp("svc_read", {"key": "2"})
            assert result.is_error is False
            assert text(result) == f"h-{faulty.tag}"
    finally:
        kill_group(proc)


async def test_replica_failing_health_probes_is_ejected_and_readmitted(
    tmp_path: Path, faulty: Faulty
) -> None:
    toml = gateway_table(health_interval=0.3) + stdio_replicas(faulty, "svc", ["r1", "r2"])
    async with running(tmp_path, toml) as (gateway, client):
        r1 = gateway.upstreams[0]
        faulty.mode("r1", "hang-probes")
        await eventually(lambda: not r1.health.healthy, "r1 ejected", 10)
        for i in range(6):
            result = await client.call_tool_mcp("svc_read", {"key": f"e{i}"})
            assert text(result) == f"r2-{faulty.tag}"
        faulty.mode("r1", "ok")
        await eventually(lambda: r1.health.healthy, "r1 readmitted", 10)
        served = {text(await client.call_tool_mcp("svc_read", {"key": f"a{i}"})) for i in range(4)}
        assert f"r1-{faulty.tag}" in served


async def test_failover_group_takes_over_when_every_replica_fails(
    tmp_path: Path, faulty: Faulty
) -> None:
    faulty.mode("r1", "hang")
    toml = gateway_table(attempt_timeout=0.5, request_timeout=3)
    toml += stdio_replicas(faulty, "svc", ["r1"])
    toml += stdio_replicas(faulty, "standby", ["s1"], 'failover_for = "svc"\npriority = 0')
    async with running(tmp_path, toml) as (_, client):
        names = {tool.name for tool in await client.list_tools()}
        assert "svc_read" in names
        assert not any(name.startswith("standby_") for name in names)  # hidden
        result = await client.call_tool_mcp("svc_read", {"key": "f1"})
        assert result.is_error is False, text(result)
        assert text(result) == f"s1-{faulty.tag}"
        # A non-idempotent call that may have run on r1 is never run on the standby too.
        faulty.mode("r1", "hang")
        unsafe = await client.call_tool_mcp("svc_write", {"key": "w1"})
        assert unsafe.is_error is True
        assert [line[0] for line in faulty.executions("write")] == [f"r1-{faulty.tag}"]
