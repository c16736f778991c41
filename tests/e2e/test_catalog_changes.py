"""Backends that come and go: a late backend appears, collisions are refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anyio
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport

from tests.e2e.procs import PYTHON, SERVERS, backend_process, demo_servers, free_port

pytestmark = pytest.mark.e2e


class ListChanged(MessageHandler):
    def __init__(self) -> None:
        self.tools = anyio.Event()

    async def on_tool_list_changed(self, message: mcp_types.ToolListChangedNotification) -> None:
        self.tools.set()


async def test_backend_that_starts_late_appears_and_clients_are_told(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 5
{demo_servers(tmp_path, "units")}
[[servers]]
name = "late"
url = "http://127.0.0.1:{port}/mcp"
"""
    )
    handler = ListChanged()
    transport = StdioTransport(
        command=PYTHON, args=["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False
    )
    # The handshake era: unsolicited list_changed notifications exist there.
    async with Client(transport, mode="legacy", message_handler=handler, timeout=30) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert "units_add" in names
        assert not any(name.startswith("late_") for name in names)

        with backend_process("clock.py", "--transport", "http", port=port):
            with anyio.fail_after(60):
                await handler.tools.wait()
            names = {tool.name for tool in await client.list_tools()}
            assert {"late_echo", "late_now", "units_add"} <= names
            result = await client.call_tool_mcp("late_echo", {"text": "better late"})
            assert result.content[0].text == "better late"  # type: ignore[union-attr]


def test_name_collision_is_a_startup_error_naming_both(tmp_path: Path) -> None:
    # Two servers with one prefix: a collision the config made, fixable before starting.
    config = tmp_path / "servers.toml"
    units = SERVERS / "units.py"
    config.write_text(
        f"""
[[servers]]
name = "first"
prefix = ""
command = "python"
args = ["{units}"]

[[servers]]
name = "second"
prefix = ""
command = "python"
args = ["{units}"]
"""
    )
    done = subprocess.run(
        [PYTHON, "-m", "mcp_agg", "tools", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "collision" in done.stderr
    assert "'first'" in done.stderr
    assert "'second'" in done.stderr
    assert "Traceback" not in done.stderr  # one line says it
    assert done.stdout == ""
