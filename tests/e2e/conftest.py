"""Fixtures that start real backends and a real `mcp-agg serve`, and talk MCP to it."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    backend_process,
    demo_servers,
    descendants,
    free_port,
    pids_with_arg,
    served_gateway,
)

FAULTY = BACKENDS / "faulty.py"


@dataclass(frozen=True)
class Backends:
    http_url: str
    sse_url: str


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    """The clock demo server over streamable HTTP and over SSE, run by the test."""
    http_port, sse_port = free_port(), free_port()
    with (
        backend_process("clock.py", "--transport", "http", port=http_port),
        backend_process("clock.py", "--transport", "sse", port=sse_port),
    ):
        yield Backends(
            http_url=f"http://127.0.0.1:{http_port}/mcp",
            sse_url=f"http://127.0.0.1:{sse_port}/sse",
        )


def write_config(folder: Path, backends: Backends, extra: str = "") -> Path:
    """A servers.toml with one backend of every kind, a third-party one and a broken one."""
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 30
{demo_servers(folder)}
[[servers]]
name = "web"
url = "{backends.http_url}"

[[servers]]
name = "events"
url = "{backends.sse_url}"
transport = "sse"

# A third-party server from PyPI (the official MCP time server).
[[servers]]
name = "time"
command = "python"
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]

# A launcher that keeps a child, as npx and uvx do.
{demo_servers(folder, "wrapped")}
[[servers]]
name = "broken"
command = "python"
args = ["-c", "import sys; print('broken backend: no config', file=sys.stderr); sys.exit(3)"]
{extra}
"""
    )
    return config


@dataclass
class Faulty:
    """The fault controls and the execution log of a set of replicas."""

    folder: Path
    tag: str

    @property
    def counts(self) -> Path:
        return self.folder / "counts.log"

    def mode(self, replica: str, mode: str) -> None:
        (self.folder / f"{replica}.mode").write_text(mode)

    def args(self, replica: str) -> list[str]:
        return [
            str(FAULTY),
            "--replica",
            f"{replica}-{self.tag}",
            "--count-file",
            str(self.counts),
            "--mode-file",
            str(self.folder / f"{replica}.mode"),
        ]

    def lines(self) -> list[list[str]]:
        if not self.counts.exists():
            return []
        return [line.split() for line in self.counts.read_text().splitlines()]

    def executions(self, tool: str) -> list[list[str]]:
        return [line for line in self.lines() if line[1] == tool]

    def kill(self, replica: str) -> None:
        pids = pids_with_arg(f"--replica {replica}-{self.tag}")
        assert pids, f"no process for replica {replica}"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def faulty(tmp_path: Path) -> Faulty:
    return Faulty(tmp_path, uuid.uuid4().hex[:8])


@dataclass
class Front:
    """A connected MCP client to a running gateway, and the gateway's process tree."""

    client: Client[Any]
    gateway_pid: int
    tree: set[int]


def gateway_pid_for(config: Path) -> int:
    pids = {p for p in pids_with_arg(str(config)) if p in pids_with_arg("serve")}
    assert len(pids) == 1, f"expected one gateway process for {config}, found {pids}"
    return pids.pop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stdio_front(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends
) -> AsyncIterator[Front]:
    config = write_config(tmp_path_factory.mktemp("stdio"), backends)
    transport = StdioTransport(
        command=PYTHON, args=["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False
    )
    async with Client(transport, mode="legacy", timeout=30) as client:
        pid = gateway_pid_for(config)
        yield Front(client, pid, descendants(pid))


@pytest.fixture(scope="module")
def http_gateway(
    tmp_path_factory: pytest.TempPathFactory, backends: Backends
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    config = write_config(tmp_path_factory.mktemp("http"), backends)
    with served_gateway(config) as (url, proc):
        yield url, proc, config


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def http_front(
    http_gateway: tuple[str, subprocess.Popen[bytes], Path],
) -> AsyncIterator[Front]:
    url, proc, _ = http_gateway
    async with Client(StreamableHttpTransport(url), timeout=30) as client:
        yield Front(client, proc.pid, descendants(proc.pid))
