"""Backends that lose the gateway's session, with real processes: a served gateway, HTTP
backends killed (SIGKILL) and restarted on the same port while the gateway is idle, and a
client.

A restarted backend no longer knows the session the gateway holds. The TypeScript SDK's
server-everything answers it with HTTP 400 and a JSON-RPC error without an id, a FastMCP
server with 404 "Session not found": either way the request never reached a tool, so the
gateway re-initializes the replica's session and sends the call again, even a call to a
tool that is not safe to repeat, and the breaker does not hold it against the replica.
A backend that comes back while its replica waits out a reconnect backoff serves the next
call at once: the call has the replica try early. A replica ejected by its health checks
is reconnected, not only ejected.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.conftest import Faulty
from tests.e2e.faultproxy import fault_proxy
from tests.e2e.procs import (
    PYTHON,
    eventually,
    free_port,
    kill_group,
    listening,
    node_server,
    served_gateway,
)
from tests.e2e.test_metrics import metrics_url, sample, scrape

pytestmark = pytest.mark.e2e

GATEWAY = """
[gateway]
connect_timeout = {connect_timeout}
request_timeout = {request_timeout}
health_interval = {health_interval}
unhealthy_threshold = 1

[gateway.breaker]
# One failure held against a replica would open its breaker.
failure_threshold = 1
"""


def gateway_config(
    folder: Path,
    servers: str,
    *,
    request_timeout: float = 20,
    health: float = 0,
    connect_timeout: float = 30,
) -> Path:
    config = folder / "servers.toml"
    values = {
        "connect_timeout": connect_timeout,
        "request_timeout": request_timeout,
        "health_interval": health,
    }
    config.write_text(GATEWAY.format(**values) + servers)
    return config


def http_server(name: str, port: int, extra: str = "") -> str:
    return f'\n[[servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/mcp"\n{extra}\n'


@contextmanager
def everything(port: int, stdout: IO[bytes] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """server-everything over streamable HTTP on `port` (what it says to `stdout`)."""
    command = node_server("mcp-server-everything", "streamableHttp")
    with listening(command, port, env={"PORT": str(port)}, stdout=stdout) as proc:
        yield proc


def text(result: mcp_types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


async def replica_samples(url: str, server: str) -> dict[str, float]:
    """The replica metrics of `server`'s one replica, by name."""
    samples = await scrape(metrics_url(url))
    labels = {"server": server, "replica": f"{server}-1"}
    gauges = {name: f"mcp_agg_replica_{name}" for name in ("up", "healthy")}
    counters = {name: f"mcp_agg_replica_{name}_total" for name in ("connects", "failures")}
    names = {**gauges, **counters, "breaker_opens": "mcp_agg_replica_breaker_opens_total"}
    return {name: sample(samples, metric, **labels) for name, metric in names.items()}


async def test_restarted_typescript_backend_is_reinitialized_and_the_call_resent(
    tmp_path: Path,
) -> None:
    port = free_port()
    # echo is annotated read-only; the operator's pattern makes it unsafe to repeat.
    servers = http_server("everything", port, 'non_idempotent_tools = ["echo"]')
    config = gateway_config(tmp_path, servers)
    with everything(port) as first, served_gateway(config) as (url, _):
        async with Client(StreamableHttpTransport(url), timeout=30) as client:
            before = await client.call_tool_mcp("everything_echo", {"message": "before"})
            assert text(before) == "Echo: before", text(before)
            kill_group(first)  # SIGKILL its process group, while the gateway is idle
            with everything(port):
                after = await client.call_tool_mcp("everything_echo", {"message": "after"})
                assert after.is_error is False, text(after)
                assert text(after) == "Echo: after"
                replica = await replica_samples(url, "everything")
    assert replica["up"] == 1
    assert replica["healthy"] == 1
    assert replica["connects"] == 2
    assert replica["failures"] == 0
    assert replica["breaker_opens"] == 0


async def test_restarted_backend_found_by_health_probes_is_reconnected_not_only_ejected(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = gateway_config(tmp_path, http_server("everything", port), health=3)
    said = tmp_path / "everything.log"

    def posts() -> int:
        """The POSTs server-everything received: while the gateway is idle, its probes."""
        return said.read_text().count("Received MCP POST request")

    async def next_post() -> None:
        seen = posts()
        await eventually(lambda: posts() > seen, "a health probe", 10)

    with (
        said.open("ab") as stdout,
        everything(port, stdout) as first,
        served_gateway(config) as (url, _),
    ):
        async with Client(StreamableHttpTransport(url), timeout=30) as client:
            before = await client.call_tool_mcp("everything_echo", {"message": "1"})
            assert text(before) == "Echo: 1", text(before)
        # Restart the backend right after a probe (the first POST may be a listing
        # refresh), so that the next probe reaches the new process in the old session.
        await next_post()
        await next_post()
        kill_group(first)
        with everything(port, stdout):

            async def reconnected() -> bool:
                replica = await replica_samples(url, "everything")
                return replica["connects"] == 2 and replica["up"] == 1

            await eventually(reconnected, "the replica to open a new session", 20)


async def test_replica_whose_probes_keep_timing_out_is_reconnected_after_connect_timeout(
    tmp_path: Path,
) -> None:
    port = free_port()
    with everything(port), fault_proxy(port) as proxy:
        servers = http_server("everything", proxy.port)
        config = gateway_config(tmp_path, servers, health=0.5, connect_timeout=3)
        with served_gateway(config) as (url, _):
            async with Client(StreamableHttpTransport(url), timeout=30) as client:
                before = await client.call_tool_mcp("everything_echo", {"message": "1"})
                assert text(before) == "Echo: 1", text(before)

            async def replica(**expected: float) -> bool:
                found = await replica_samples(url, "everything")
                return all(found[name] == value for name, value in expected.items())

            # A middlebox drops the connections it saw while the network was out: probes
            # time out, and a request stuck on such a connection holds up the session.
            proxy.set("blackhole")
            await eventually(lambda: replica(healthy=0), "the replica to be ejected", 15)
            proxy.set("pass")
            await eventually(lambda: replica(connects=2, up=1), "a new session", 30)


async def test_first_call_after_a_session_expiry_is_resent_and_not_held_against_the_replica(
    tmp_path: Path, faulty: Faulty
) -> None:
    port = free_port()
    command = [PYTHON, *faulty.args("h"), "--transport", "http", "--port", str(port)]
    # Sessions are the handshake era's: a modern-era backend has none to expire.
    config = gateway_config(tmp_path, http_server("svc", port, 'protocol = "legacy"'))
    with listening(command, port) as first, served_gateway(config) as (url, _):
        async with Client(StreamableHttpTransport(url), timeout=30) as client:
            assert text(await client.call_tool_mcp("svc_write", {"key": "w1"})) == f"h-{faulty.tag}"
            kill_group(first)
            # The restarted FastMCP server answers the old session with 404 "Session not found".
            with listening(command, port):
                after = await client.call_tool_mcp("svc_write", {"key": "w2"})
                assert after.is_error is False, text(after)
                replica = await replica_samples(url, "svc")
    assert [line[2] for line in faulty.executions("write")] == ["w1", "w2"]  # each ran once
    assert replica["breaker_opens"] == 0  # with failure_threshold = 1
    assert replica["failures"] == 0
    assert replica["up"] == 1
    assert replica["connects"] == 2


#: The supervisor's log line before it sleeps out a reconnect backoff.
BACKOFF = re.compile(r"backend everything-1: .*; retrying in (\d+\.\d)s")


async def test_a_call_during_reconnect_backoff_reconnects_early_and_succeeds(
    tmp_path: Path,
) -> None:
    port = free_port()
    # Health probes notice the kill while no call is made.
    config = gateway_config(
        tmp_path, http_server("everything", port), request_timeout=15, health=0.3
    )
    log = tmp_path / "gateway.log"
    with (
        log.open("wb") as stderr,
        everything(port) as first,
        served_gateway(config, stderr=stderr) as (url, _),
    ):
        async with Client(StreamableHttpTransport(url), timeout=30) as client:
            before = await client.call_tool_mcp("everything_echo", {"message": "1"})
            assert before.is_error is False, text(before)
            kill_group(first)

            def long_backoff() -> float:
                waits = [float(w) for w in BACKOFF.findall(log.read_text())]
                return next((w for w in waits if w >= 4), 0.0)

            # Reconnecting fails while the backend is down, each wait longer than the last.
            backoff = await eventually(long_backoff, "a reconnect backoff of 4s", 20)
            seen = time.monotonic()
            with everything(port):
                after = await client.call_tool_mcp("everything_echo", {"message": "2"})
                served = time.monotonic()
                assert after.is_error is False, text(after)
                assert text(after) == "Echo: 2"
    # The call did not wait out the backoff: its replica reconnected early for it.
    assert served - seen < backoff - 1, (served - seen, backoff)
