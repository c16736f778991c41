"""A third-party server from the npm registry, through `npx`, behind the gateway.

`npx` starts node, which starts the server: the test checks that the gateway relays its
tools and that the whole launcher tree is gone once the gateway stops.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.e2e.conftest import gateway_pid_for
from tests.e2e.procs import PYTHON, alive, descendants, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.npm]


async def test_everything_server_via_npx(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    assert npx is not None, "npx is required (Node.js); the CI machine has it"
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 240

[[servers]]
name = "everything"
command = "{npx}"
args = ["-y", "@modelcontextprotocol/server-everything"]
env = {{ npm_config_yes = "true", npm_config_update_notifier = "false" }}
"""
    )
    transport = StdioTransport(
        command=PYTHON, args=["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False
    )
    async with Client(transport, timeout=60) as client:
        names = {tool.name for tool in await client.list_tools()}
        # Read once the list is in: the gateway answers the handshake before npx has
        # started node (front/earlyinit.py), and lists only once the server is up.
        tree = descendants(gateway_pid_for(config))
        assert "everything_echo" in names
        result = await client.call_tool_mcp("everything_echo", {"message": "through the gateway"})
        assert result.is_error is False
        assert result.content[0].text == "Echo: through the gateway"  # type: ignore[union-attr]
        sums = await client.call_tool_mcp("everything_get-sum", {"a": 2, "b": 40})
        assert "42" in sums.content[0].text  # type: ignore[union-attr]
    assert len(tree) >= 2, f"expected npx and its server under the gateway, found {tree}"
    wait_until(lambda: not alive(tree), 15, f"npx's processes {alive(tree)} to exit")
