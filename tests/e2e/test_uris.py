"""Every URI a backend hands a client resolves through the gateway, over both fronts.

Real servers behind a real gateway: an MCP Apps server from the npm registry
(`server-basic-vanillajs`, whose tool names its UI in `_meta.ui.resourceUri`),
`server-everything` (resource links and embedded resources in tool results, a resource
it makes at runtime), and `backends/linking.py` twice (`one`, `two`): both list
`shared://doc` and `shared://item/{id}` with contents of their own, so `two`'s are
prefixed, in everything it hands out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.shared.exceptions import MCPError

from tests.e2e.procs import BACKENDS, PYTHON, node_server, served_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

APP = node_server("mcp-server-basic-vanillajs", "--stdio")
EVERYTHING = node_server("mcp-server-everything")
LINKING = BACKENDS / "linking.py"
FRONTS = ["stdio", "http"]


def entry(name: str, command: list[str]) -> str:
    args = ", ".join(f'"{arg}"' for arg in command[1:])
    return f'\n[[servers]]\nname = "{name}"\ncommand = "{command[0]}"\nargs = [{args}]\n'


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("uris") / "servers.toml"
    path.write_text(
        "[gateway]\nconnect_timeout = 60\nrequest_timeout = 30\n"
        + entry("app", APP)
        + entry("everything", EVERYTHING)
        + entry("one", [PYTHON, str(LINKING), "--label", "one"])
        + entry("two", [PYTHON, str(LINKING), "--label", "two"])
    )
    return path


@pytest.fixture(scope="module", params=FRONTS)
def transport(request: pytest.FixtureRequest, config: Path) -> Iterator[Any]:
    if request.param == "stdio":
        yield StdioTransport(
            PYTHON, ["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False
        )
        return
    with served_gateway(config) as (url, _):
        yield StreamableHttpTransport(url)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(transport: Any) -> AsyncIterator[Client[Any]]:
    async with Client(transport, timeout=30) as client:
        yield client


def dumped(result: mcp_types.ReadResourceResult) -> list[dict[str, Any]]:
    return [c.model_dump(by_alias=True, mode="json") for c in result.contents]


async def read_text(client: Client[Any], uri: str) -> str:
    (content,) = (await client.read_resource_mcp(uri)).contents
    assert content.uri == uri
    assert isinstance(content, mcp_types.TextResourceContents), content
    return content.text


def items(result: mcp_types.CallToolResult, kind: type[Any]) -> list[Any]:
    assert not result.is_error, result
    return [item for item in result.content if isinstance(item, kind)]


# ---------------------------------------------------------------------------- MCP Apps


async def test_an_mcp_apps_ui_resource_is_read_as_the_server_serves_it(
    gateway: Client[Any],
) -> None:
    tools = {t.name: t for t in await gateway.list_tools()}
    meta = tools["app_get-time"].meta or {}
    uri = meta["ui"]["resourceUri"]
    assert uri == "ui://get-time/mcp-app.html"  # as the server wrote it
    through = await gateway.read_resource_mcp(uri)
    async with Client(StdioTransport(APP[0], APP[1:], keep_alive=False), timeout=30) as direct:
        served = await direct.read_resource_mcp(uri)
    assert dumped(through) == dumped(served)
    assert through.contents[0].mime_type == "text/html;profile=mcp-app"


# ---------------------------------------------------------------------------- server-everything


async def test_every_resource_link_of_a_tool_result_is_readable(gateway: Client[Any]) -> None:
    result = await gateway.call_tool_mcp("everything_get-resource-links", {"count": 10})
    links = items(result, mcp_types.ResourceLink)
    assert len(links) == 10
    for link in links:
        read = await gateway.read_resource_mcp(link.uri)
        assert [c.uri for c in read.contents] == [link.uri]


async def test_an_embedded_resource_of_a_tool_result_is_readable(gateway: Client[Any]) -> None:
    arguments = {"resourceType": "Text", "resourceId": 2}
    result = await gateway.call_tool_mcp("everything_get-resource-reference", arguments)
    (embedded,) = items(result, mcp_types.EmbeddedResource)
    assert (await read_text(gateway, embedded.resource.uri)).startswith("Resource 2:")


async def test_a_resource_made_at_runtime_is_readable_at_once(gateway: Client[Any]) -> None:
    arguments = {"name": f"hello-{id(gateway)}.gz", "data": "data:text/plain;base64,aGVsbG8="}
    result = await gateway.call_tool_mcp("everything_gzip-file-as-resource", arguments)
    (link,) = items(result, mcp_types.ResourceLink)
    read = await gateway.read_resource_mcp(link.uri)
    assert isinstance(read.contents[0], mcp_types.BlobResourceContents)


# ---------------------------------------------------------------------------- a collision


async def test_both_servers_listings_of_a_colliding_uri_are_readable(
    gateway: Client[Any],
) -> None:
    uris = {str(r.uri) for r in await gateway.list_resources()}
    assert {"shared://doc", "shared://two/doc"} <= uris
    templates = {t.uri_template for t in await gateway.list_resource_templates()}
    assert {"shared://item/{id}", "shared://two/item/{id}"} <= templates
    assert await read_text(gateway, "shared://doc") == "doc of one"
    assert await read_text(gateway, "shared://two/doc") == "doc of two"
    assert await read_text(gateway, "shared://item/3") == "item 3 of one"
    assert await read_text(gateway, "shared://two/item/3") == "item 3 of two"


@pytest.mark.parametrize(
    ("server", "doc", "item", "made"),
    [
        ("one", "shared://doc", "shared://item/7", "made://one/1"),
        # The later server's colliding URIs are rewritten; its others are not.
        ("two", "shared://two/doc", "shared://two/item/7", "made://two/1"),
    ],
)
async def test_what_each_server_hands_out_reaches_it(
    gateway: Client[Any], server: str, doc: str, item: str, made: str
) -> None:
    tools = {t.name: t for t in await gateway.list_tools()}
    assert (tools[f"{server}_links"].meta or {})["ui"]["resourceUri"] == doc
    result = await gateway.call_tool_mcp(f"{server}_links", {})
    links = [link.uri for link in items(result, mcp_types.ResourceLink)]
    assert links == [doc, item, made]
    (embedded,) = items(result, mcp_types.EmbeddedResource)
    assert embedded.resource.uri == doc
    assert await read_text(gateway, doc) == f"doc of {server}"
    assert await read_text(gateway, item) == f"item 7 of {server}"
    assert await read_text(gateway, made) == f"{made} of {server}"
    prompt = await gateway.get_prompt(f"{server}_cite")
    cited = prompt.messages[0].content
    assert isinstance(cited, mcp_types.EmbeddedResource)
    assert cited.resource.uri == doc


async def test_a_uri_never_handed_out_is_found_on_the_server_that_has_it(
    gateway: Client[Any],
) -> None:
    # `one` is asked first and says "not found"; `two` has it.
    assert await read_text(gateway, "made://two/never-linked") == "made://two/never-linked of two"


async def test_a_uri_no_server_has_is_not_found(gateway: Client[Any]) -> None:
    with pytest.raises(MCPError) as raised:
        await gateway.read_resource_mcp("made://three/1")
    assert raised.value.error.code == mcp_types.INVALID_PARAMS
    assert "made://three/1" in raised.value.error.message
