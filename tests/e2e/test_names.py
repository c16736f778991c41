"""Backend names a client would refuse, through the real gateway: `工具` and `道具` (both
`___` once sanitized), names of two servers that sanitize alike, and names of two servers
that join alike; the other backends serve on."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.e2e.procs import BACKENDS, PYTHON, SERVERS, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
NAMED = BACKENDS / "named.py"


def named(server: str, *tools: str) -> str:
    """A `[[servers]]` entry for a backend with these tool (and prompt) names."""
    args = ", ".join(f'"{arg}"' for arg in (NAMED, *tools))
    return f'\n[[servers]]\nname = "{server}"\ncommand = "python"\nargs = [{args}]\n'


@dataclass
class Gateway:
    client: Client[Any]
    stderr: Path
    #: Exposed tool name by the original name of the backend tool it reaches (each
    #: original is given to one server only).
    exposed: dict[str, str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    folder = tmp_path_factory.mktemp("names")
    config = folder / "servers.toml"
    config.write_text(
        "[gateway]\nconnect_timeout = 60\n"
        + named("cjk", "工具", "道具")
        # `b.c` of `a` and `c` of `a_b` are both `a_b_c` once sanitized.
        + named("a", "b.c")
        + named("a_b", "c")
        # `y_z` of `x` and `z` of `x_y` are both `x_y_z` as they are: a collision.
        + named("x", "y_z", "only_x")
        + named("x_y", "z")
        + f'\n[[servers]]\nname = "units"\ncommand = "python"\nargs = ["{SERVERS / "units.py"}"]\n'
    )
    stderr = folder / "stderr.log"
    args = ["-m", "mcp_agg", "serve", "-c", str(config)]
    transport = StdioTransport(PYTHON, args, keep_alive=False, log_file=stderr)
    async with Client(transport, timeout=30) as client:
        tools = await client.list_tools()
        exposed = {}
        for tool in tools:
            match = re.fullmatch(r"Answers '(.*)'\.", tool.description or "")  # named.py's
            if match is not None:
                exposed[match[1]] = tool.name
        yield Gateway(client, stderr, exposed)


def text(result: mcp_types.CallToolResult) -> str:
    assert not result.is_error, result
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def test_every_listed_name_is_one_clients_accept(gateway: Gateway) -> None:
    names = [tool.name for tool in await gateway.client.list_tools()]
    assert names
    assert [name for name in names if not VALID.match(name)] == []
    prompts = [prompt.name for prompt in await gateway.client.list_prompts()]
    assert [name for name in prompts if not VALID.match(name)] == []


@pytest.mark.parametrize("original", ["工具", "道具"])
async def test_names_that_sanitize_alike_are_both_served(gateway: Gateway, original: str) -> None:
    assert gateway.exposed["工具"] != gateway.exposed["道具"]
    name = gateway.exposed[original]
    assert name.startswith("cjk_")
    assert text(await gateway.client.call_tool_mcp(name, {})) == original


async def test_prompts_that_sanitize_alike_are_both_served(gateway: Gateway) -> None:
    prompts = {p.description: p.name for p in await gateway.client.list_prompts()}
    for original in ("工具", "道具"):
        result = await gateway.client.get_prompt(prompts[f"Says {original!r}."])
        block = result.messages[0].content
        assert isinstance(block, mcp_types.TextContent)
        assert block.text == f"prompt {original}"


async def test_names_of_two_servers_that_sanitize_alike_are_both_served(gateway: Gateway) -> None:
    assert gateway.exposed["b.c"].startswith("a_b_c_")  # a's, made unique
    assert gateway.exposed["c"] == "a_b_c"  # a_b's, valid as it is
    dotted = await gateway.client.call_tool_mcp(gateway.exposed["b.c"], {})
    plain = await gateway.client.call_tool_mcp("a_b_c", {})
    assert (text(dotted), text(plain)) == ("b.c", "c")


async def test_names_that_still_collide_are_withheld_and_said_so(gateway: Gateway) -> None:
    names = {tool.name for tool in await gateway.client.list_tools()}
    assert "x_y_z" not in names
    assert text(await gateway.client.call_tool_mcp("x_only_x", {})) == "only_x"
    log = await eventually(lambda: gateway.stderr.read_text(), "the gateway's stderr")
    assert "tool name collision: 'x' tool 'y_z' and 'x_y' tool 'z'" in log
    assert "none of them is exposed" in log


async def test_the_other_backends_serve_on(gateway: Gateway) -> None:
    result = await gateway.client.call_tool_mcp("units_add", {"a": 1, "b": 2})
    assert text(result) == "3.0"
