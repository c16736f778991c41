"""Backends that go away and come back, with real processes: a served gateway, HTTP
backends killed (SIGKILL) and restarted on the same port, and a client.

A backend that comes back while its replica waits out a reconnect backoff serves the next
call at once: the call has the replica try early.
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

from tests.e2e.procs import (
    eventually,
    free_port,
    kill_group,
    listening,
    node_server,
    served_gateway,
)

pytestmark = pytest.mark.e2e

EVERYTHING = node_server("mcp-server-everything", "streamableHttp")

GATEWAY = """
[gateway]
connect_timeout = 30
request_timeout = {request_timeout}
health_interval = {health_interval}

[gateway.breaker]
# One failure held against a replica would open its breaker.
failure_threshold = 1
"""


def gateway_config(
    folder: Path, servers: str, *, request_timeout: float = 20, health: float = 0
) -> Path:
    config = folder / "servers.toml"
    config.write_text(
        GATEWAY.format(request_timeout=request_timeout, health_interval=health) + servers
    )
    return config


def http_server(name: str, port: int, extra: str = "") -> str:
    return f'\n[[servers]]\nname = "{name}"\nurl = "http://127.0.0.1:{port}/mcp"\n{extra}\n'


@contextmanager
def everything(port: int, stdout: IO[bytes] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """server-everything over streamable HTTP on `port` (what it says to `stdout`)."""
    with listening(EVERYTHING, port, env={"PORT": str(port)}, stdout=stdout) as proc:
        yield proc


def text(result: mcp_types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


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
