"""Search mode and startup feedback, through real gateways over a backend of 300 tools."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport

from mcp_agg.components.search import CALL_TOOL, SEARCH_TOOL
from tests.e2e.backends.many_tools import word
from tests.e2e.procs import BACKENDS, PYTHON, demo_servers, served_gateway

pytestmark = pytest.mark.e2e

MANY = BACKENDS / "many_tools.py"
#: The backend's tools: 300 probes, convert_temperature and grow.
MANY_TOOLS = 302
#: As the gateway's environment holds them; nothing here is a real secret.
TOKENS = {"ADMIN_TOKEN": "admin-token-for-tests", "READER_TOKEN": "reader-token-for-tests"}


@dataclass(frozen=True)
class Served:
    url: str
    stderr: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """An HTTP gateway (default settings: the switch is automatic) over the 300-tool
    backend, the units demo backend and a backend that cannot start; stderr kept.
    Callers authenticate: `admin` may use every tool, `reader` probes 100-199 only."""
    folder = tmp_path_factory.mktemp("search")
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
pin = "off"

[gateway.auth]
type = "bearer"

[[gateway.auth.tokens]]
token = "${{ADMIN_TOKEN}}"
client_id = "admin"
roles = ["admin"]

[[gateway.auth.tokens]]
token = "${{READER_TOKEN}}"
client_id = "reader"
roles = ["reader"]

[gateway.roles.admin]
allow = ["*"]

[gateway.roles.reader]
allow = ["many_probe_1*", "gateway_*"]

[[servers]]
name = "many"
command = "python"
args = ["{MANY}"]
{demo_servers(folder, "units")}
[[servers]]
name = "broken"
command = "{folder / "no-such-backend"}"
"""
    )
    stderr = folder / "stderr.log"
    with stderr.open("wb") as sink, served_gateway(config, stderr=sink, env=TOKENS) as (url, _):
        yield Served(url, stderr)


def client(served: Served, token: str = "admin-token-for-tests") -> Client[Any]:
    transport = StreamableHttpTransport(served.url, headers={"Authorization": f"Bearer {token}"})
    return Client(transport, mode="legacy", timeout=30)


def structured(result: mcp_types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result
    assert result.structured_content is not None
    return result.structured_content


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def test_a_large_catalog_is_searched_and_called_through_two_tools(served: Served) -> None:
    async with client(served) as session:
        assert sorted(t.name for t in await session.list_tools()) == sorted(
            [CALL_TOOL, SEARCH_TOOL]
        )

        # A made-up word of one description finds that tool, first.
        found = structured(
            await session.call_tool_mcp(SEARCH_TOOL, {"query": f"{word(217)} gauge", "limit": 5})
        )
        assert found["tools"][0]["name"] == "many_probe_217"
        assert found["tools"][0]["inputSchema"]["properties"]["x"]["type"] == "string"
        assert len(found["tools"]) == 5  # "gauge" matches every probe
        found = structured(await session.call_tool_mcp(SEARCH_TOOL, {"query": "celsius"}))
        assert [t["name"] for t in found["tools"]] == ["many_convert_temperature"]

        # The call tool reaches the backend; a direct call by the exposed name does too.
        called = await session.call_tool_mcp(
            CALL_TOOL, {"name": "many_probe_217", "arguments": {"x": "via search"}}
        )
        assert not called.is_error
        assert text(called) == "probe_217 got via search"
        direct = await session.call_tool_mcp("many_probe_042", {"x": "direct"})
        assert text(direct) == "probe_042 got direct"

        # An unknown name: the call tool answers as a direct call does.
        via = await session.call_tool_mcp(CALL_TOOL, {"name": "many_probe_999"})
        plain = await session.call_tool_mcp("many_probe_999", {})
        assert via.is_error
        assert plain.is_error
        assert text(via) == text(plain)


async def test_a_caller_never_finds_nor_calls_what_its_roles_hide(served: Served) -> None:
    async with client(served, "reader-token-for-tests") as session:
        assert sorted(t.name for t in await session.list_tools()) == sorted(
            [CALL_TOOL, SEARCH_TOOL]
        )
        hidden = structured(await session.call_tool_mcp(SEARCH_TOOL, {"query": word(217)}))
        assert hidden == {"tools": [], "matches": 0}
        every = structured(await session.call_tool_mcp(SEARCH_TOOL, {"query": "gauge"}))
        assert every["matches"] == 100  # probes 100-199
        seen = structured(await session.call_tool_mcp(SEARCH_TOOL, {"query": word(150)}))
        assert [t["name"] for t in seen["tools"]] == ["many_probe_150"]

        allowed = await session.call_tool_mcp(CALL_TOOL, {"name": "many_probe_150"})
        assert text(allowed) == "probe_150 got "
        via = await session.call_tool_mcp(CALL_TOOL, {"name": "many_probe_217"})
        direct = await session.call_tool_mcp("many_probe_217", {})
        unknown = await session.call_tool_mcp("many_probe_999", {})
        assert via.is_error
        assert direct.is_error
        assert text(via) == text(direct) == text(unknown).replace("999", "217")


async def test_startup_lines_and_summary_on_a_captured_stderr(served: Served) -> None:
    async with client(served) as session:
        every = structured(await session.call_tool_mcp(SEARCH_TOOL, {"query": ""}))
    log = served.stderr.read_text()
    assert "\x1b[" not in log  # not a terminal: no live display, no colours
    assert re.search(
        rf"INFO mcp_agg.console.startup: backend many-\d+: connected, {MANY_TOOLS} tools", log
    )
    assert re.search(r"INFO mcp_agg.console.startup: backend units-\d+: connected, 4 tools", log)
    assert re.search(
        r"ERROR mcp_agg.console.startup: backend broken-\d+: failed after [\d.]+s: ", log
    )
    summaries = re.findall(r"mcp_agg.console.startup: ready in [\d.]+s: (.*)", log)
    total = every["matches"]
    assert total == MANY_TOOLS + 4
    assert summaries == [
        f"2/3 servers, {total} tools, 1 resource, 1 prompt; tools/list shows "
        "the search tools (search mode); unavailable: broken (retrying in the background)"
    ]
    assert "tools are more than max_listed_tools (128)" in log


class ListChanged(MessageHandler):
    def __init__(self) -> None:
        self.tools = anyio.Event()

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self.tools.set()


async def test_a_catalog_that_grows_past_the_limit_switches_and_says_so(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
pin = "off"

# The backend announces its new tools the handshake era's way (a FastMCP server has no
# change stream on the modern era; docs/eras.md): that era, pinned.
[[servers]]
name = "many"
command = "python"
args = ["{MANY}", "--count", "100"]
protocol = "legacy"
"""
    )
    handler = ListChanged()
    transport = StdioTransport(
        command=PYTHON, args=["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False
    )
    async with Client(transport, mode="legacy", message_handler=handler, timeout=30) as session:
        assert len(await session.list_tools()) == 102
        assert text(await session.call_tool_mcp("many_grow", {"count": 30})) == "130 probes"
        with anyio.fail_after(20):
            await handler.tools.wait()
        assert {t.name for t in await session.list_tools()} == {SEARCH_TOOL, CALL_TOOL}
        found = structured(await session.call_tool_mcp(SEARCH_TOOL, {"query": word(123)}))
        assert [t["name"] for t in found["tools"]] == ["many_probe_123"]


def _lines(stream: IO[bytes], into: queue.Queue[bytes]) -> None:
    for line in stream:
        into.put(line)


def test_stdio_search_mode_on_a_small_catalog_keeps_stdout_to_the_protocol(
    tmp_path: Path,
) -> None:
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
pin = "off"
tool_mode = "search"
{demo_servers(tmp_path, "units")}"""
    )
    proc = subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    assert proc.stderr is not None
    out: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True)
    reader.start()

    def send(message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        proc.stdin.flush()

    def answer(request_id: int) -> dict[str, Any]:
        while True:
            message = json.loads(out.get(timeout=30))
            if message.get("id") == request_id:
                return dict(message)

    try:
        send(
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "1"},
                },
            }
        )
        assert "result" in answer(1)
        send({"method": "notifications/initialized"})
        send({"id": 2, "method": "tools/list"})
        listed = answer(2)["result"]["tools"]
        assert sorted(t["name"] for t in listed) == sorted([SEARCH_TOOL, CALL_TOOL])
        send(
            {
                "id": 3,
                "method": "tools/call",
                "params": {"name": SEARCH_TOOL, "arguments": {"query": "multiply"}},
            }
        )
        found = answer(3)["result"]["structuredContent"]["tools"]
        assert found[0]["name"] == "units_multiply"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)
        proc.stdout.close()
    rest = []
    while not out.empty():
        rest.append(out.get())
    # Whatever else came on stdout is protocol too: JSON-RPC messages, nothing else.
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in rest)
    log = proc.stderr.read().decode()
    proc.stderr.close()
    assert re.search(r"INFO mcp_agg.console.startup: backend units-\d+: connected, 4 tools", log)
    assert re.search(
        r"mcp_agg.console.startup: ready in [\d.]+s: 1 server, 4 tools, .*; tools/list shows the "
        r"search tools \(search mode\)",
        log,
    )
    assert "max_listed_tools" not in log  # configured, not switched: no warning
