"""The gateway as a real client sees it in an ordinary session, over both fronts: its own
name and version in `serverInfo`, and a stderr that holds log lines and nothing else."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.shared.exceptions import MCPDeprecationWarning

from mcp_agg import __version__
from tests.e2e.procs import PYTHON, demo_servers, served_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@dataclass(frozen=True)
class Session:
    """What one ordinary session showed: the server's identity and the gateway's stderr."""

    server_info: mcp_types.Implementation
    stderr: str


@asynccontextmanager
async def connected(
    front: str, mode: str, config: Path, stderr: Path
) -> AsyncIterator[Client[Any]]:
    """A client of `mcp-agg serve` on this front, speaking this era; stderr to a file."""
    if front == "stdio":
        args = ["-m", "mcp_agg", "serve", "-c", str(config)]
        transport = StdioTransport(PYTHON, args, keep_alive=False, log_file=stderr)
        async with Client(transport, mode=mode, timeout=30) as client:  # type: ignore[arg-type]
            yield client
        return
    with stderr.open("wb") as err, served_gateway(config, stderr=err) as (url, _):
        async with Client(StreamableHttpTransport(url), mode=mode, timeout=30) as client:  # type: ignore[arg-type]
            yield client


async def ordinary_use(client: Client[Any], handshake: bool) -> None:
    """What a client does in a day: lists, calls, reads, prompts; on the handshake era
    also sets a log level."""
    await client.list_tools()
    result = await client.call_tool_mcp("units_add", {"a": 1, "b": 2})
    assert not result.is_error, result
    await client.read_resource("notes://index")
    await client.get_prompt(
        "units_explain_conversion", {"value": "1", "from_unit": "m", "to_unit": "km"}
    )
    if handshake:
        with warnings.catch_warnings():  # the client's own: a handshake-era method
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.set_logging_level("info")


@pytest_asyncio.fixture(
    loop_scope="module",
    scope="module",
    params=[("stdio", "legacy"), ("http", "auto")],
    ids=["stdio-handshake", "http-modern"],
)
async def session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Session:
    front, mode = request.param
    folder = tmp_path_factory.mktemp(front)
    config = folder / "servers.toml"
    config.write_text(f"[gateway]\nconnect_timeout = 60\n{demo_servers(folder)}")
    stderr = folder / "stderr.log"
    async with connected(front, mode, config, stderr) as client:
        info = client.server_info
        assert info is not None
        await ordinary_use(client, handshake=mode == "legacy")
    return Session(info, stderr.read_text())


async def test_server_info_is_the_gateways_name_and_version(session: Session) -> None:
    assert session.server_info.name == "mcp-agg"
    assert session.server_info.version == __version__


async def test_stderr_holds_no_warning_or_traceback(session: Session) -> None:
    assert "ready in" in session.stderr  # the gateway's log lines are there
    assert "Warning" not in session.stderr, session.stderr
    assert "Traceback" not in session.stderr, session.stderr
