"""Tests for mcp_agg.components.search: ranking, what each caller may find and call, and when the
gateway switches to search mode."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import anyio
import mcp_types
import pytest
from fastmcp import Client, FastMCP
from fastmcp.tools.base import Tool

from mcp_agg.backend.upstream import Listing
from mcp_agg.components import search
from mcp_agg.components.local import LocalTool
from mcp_agg.components.search import (
    CALL_TOOL,
    SEARCH_TOOL,
    SearchIndex,
    unknown_tool_result,
    words,
)
from mcp_agg.config import RoleConfig, config_from_raw
from mcp_agg.core.gateway import Gateway
from mcp_agg.front.provider import GatewayProvider
from mcp_agg.security.access import AccessPolicy
from tests.fakes import connected

FILLER = [
    "Lists the open issues of a repository.",
    "Reads a note by its title.",
    "Sends a message to a chat channel.",
    "Returns the current weather for a city.",
]


def backend_tools(count: int) -> list[mcp_types.Tool]:
    """`count` tools: `tool_N` with filler descriptions, plus a distinct word each."""
    return [
        mcp_types.Tool(
            name=f"tool_{n:03d}",
            description=f"{FILLER[n % len(FILLER)]} Marker word{n:03d}.",
            input_schema={"type": "object", "properties": {"x": {"type": "string"}}},
        )
        for n in range(count)
    ]


TEMPERATURE = mcp_types.Tool(
    name="convert_temperature",
    description="Convert a temperature from Celsius to Fahrenheit.",
    input_schema={
        "type": "object",
        "properties": {"celsius": {"type": "number", "description": "Degrees."}},
    },
    annotations=mcp_types.ToolAnnotations(read_only_hint=True),
)


class Echo(LocalTool):
    """A gateway tool that answers with its arguments (a call target without a backend)."""

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(arguments)
        return {"content": [{"type": "text", "text": f"{self.name} {arguments}"}]}

    @property
    def calls(self) -> list[dict[str, Any]]:
        return self.__dict__.setdefault("_calls", [])


def make_gateway(tools: list[mcp_types.Tool], **settings: Any) -> Gateway:
    config = config_from_raw(
        {"gateway": {"pin": "off", **settings}, "servers": [{"name": "many", "command": "python"}]},
        None,
        {},
    )
    gateway = Gateway(config)
    set_listing(gateway, tools)
    gateway.catalog = gateway.assemble_catalog(strict=True)
    return gateway


def set_listing(gateway: Gateway, tools: list[mcp_types.Tool]) -> None:
    connected(gateway.upstreams[0], Listing(tools=tuple(tools)))


def with_roles(gateway: Gateway, **roles: RoleConfig) -> None:
    """Every caller holds all of `roles` (what an authenticated front would decide)."""
    grant = AccessPolicy(roles).grant(frozenset(roles))
    gateway.visibility.access = SimpleNamespace(grant=lambda: grant)  # type: ignore[assignment]


async def call(gateway: Gateway, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    tool = gateway.calls.lookup(name)
    assert tool is not None, name
    return await gateway.calls.call(tool, arguments)


def found(result: dict[str, Any]) -> list[str]:
    assert not result.get("isError"), result
    return [t["name"] for t in result["structuredContent"]["tools"]]


def as_tool(definition: mcp_types.Tool) -> Tool:
    """A backend's tool definition as a FastMCP tool (what the index reads)."""
    return Tool(
        name=definition.name,
        description=definition.description,
        parameters=definition.input_schema,
        annotations=definition.annotations,
    )


# ---------------------------------------------------------------------------- ranking


def test_words_split_names_and_fold_plurals() -> None:
    assert words("getWeatherForecasts") == ["get", "weather", "forecast"]
    assert words("notes_list-Notes") == ["note", "list", "note"]
    assert words("HTTPServer address") == ["http", "server", "address"]
    assert words("a x 7 categories class") == ["7", "category", "class"]


def test_a_word_of_a_description_finds_its_tool_among_many() -> None:
    pool = [*backend_tools(300), TEMPERATURE]
    index = SearchIndex([as_tool(t) for t in pool])
    assert index.ranked("celsius")[0] == "convert_temperature"
    assert index.ranked("Fahrenheit conversion please")[0] == "convert_temperature"
    assert index.ranked("word217")[:1] == ["tool_217"]
    # A beginning of a word matches it too.
    assert index.ranked("fahren")[0] == "convert_temperature"
    # Several words: the tool matching more of them ranks first.
    ranked = index.ranked("weather city word002")
    assert ranked[0] == "tool_002"
    assert set(ranked) >= {f"tool_{n:03d}" for n in range(3, 300, 4)}
    assert index.ranked("nothing-like-this") == []


def test_the_name_weighs_more_than_the_description() -> None:
    named = mcp_types.Tool(name="weather", description="Today.", input_schema={"type": "object"})
    described = mcp_types.Tool(
        name="forecast", description="The weather tomorrow.", input_schema={"type": "object"}
    )
    index = SearchIndex([as_tool(described), as_tool(named)])
    assert index.ranked("weather") == ["weather", "forecast"]


def test_a_query_naming_a_tool_ranks_it_first_and_no_words_list_every_tool() -> None:
    index = SearchIndex([as_tool(t) for t in backend_tools(20)])
    assert index.ranked("TOOL_013")[0] == "tool_013"
    assert index.ranked("  ") == [f"tool_{n:03d}" for n in range(20)]


# ---------------------------------------------------------------------------- the tools


async def test_search_tool_returns_ranked_matches_with_schemas_and_a_limit() -> None:
    gateway = make_gateway([*backend_tools(200), TEMPERATURE])
    result = await call(gateway, SEARCH_TOOL, {"query": "celsius"})
    match = result["structuredContent"]["tools"][0]
    assert match == {
        "name": "many_convert_temperature",
        "description": TEMPERATURE.description,
        "inputSchema": TEMPERATURE.input_schema,
        "annotations": {"readOnlyHint": True},
    }
    # The same in the text content, for clients that read only that.
    assert '"many_convert_temperature"' in result["content"][0]["text"]

    result = await call(gateway, SEARCH_TOOL, {"query": "weather", "limit": 3})
    assert len(found(result)) == 3
    assert result["structuredContent"]["matches"] == 50
    result = await call(gateway, SEARCH_TOOL, {"query": "weather", "limit": 10_000})
    assert len(found(result)) == search.MAX_LIMIT
    bad = await call(gateway, SEARCH_TOOL, {"query": "weather", "limit": "many"})
    assert bad["isError"] is True


async def test_call_tool_calls_the_named_tool_through_the_gateway() -> None:
    gateway = make_gateway(backend_tools(3), tool_mode="search")
    echo = Echo(name="gateway_echo", parameters={"type": "object"})
    gateway.local_tools.append(lambda catalog: {echo.name: echo})
    gateway.catalog = gateway.assemble_catalog(strict=True)
    routed: list[str] = []
    gateway_call = gateway.calls.call

    async def audited(tool: Any, arguments: dict[str, Any]) -> dict[str, Any]:
        routed.append(tool.name)
        return await gateway_call(tool, arguments)

    gateway.calls.call = audited  # type: ignore[method-assign]
    result = await call(gateway, CALL_TOOL, {"name": "gateway_echo", "arguments": {"a": 1}})
    assert result["content"][0]["text"] == "gateway_echo {'a': 1}"
    assert echo.calls == [{"a": 1}]
    # Through the call pipeline twice: as the call tool, then as the tool it names.
    assert routed == [CALL_TOOL, "gateway_echo"]
    unknown = await call(gateway, CALL_TOOL, {"name": "no_such_tool"})
    assert unknown["isError"] is True
    assert unknown["content"] == unknown_tool_result("no_such_tool")["content"]
    assert (await call(gateway, CALL_TOOL, {"name": 3}))["isError"] is True
    assert (await call(gateway, CALL_TOOL, {"name": CALL_TOOL}))["isError"] is True


async def test_hidden_tools_are_never_found_nor_called() -> None:
    gateway = make_gateway(backend_tools(200), tool_mode="search")
    hidden = Echo(name="gateway_secret_echo", description="word150", parameters={})
    gateway.local_tools.append(lambda catalog: {hidden.name: hidden})
    gateway.catalog = gateway.assemble_catalog(strict=True)
    with_roles(
        gateway,
        reader=RoleConfig(allow=["many_tool_1*", "gateway_search_tools", "gateway_call_tool"]),
        no_secrets=RoleConfig(deny=["*secret*", "many_tool_15*"]),
    )
    # The lists: only the two search tools, as this caller may see them.
    provider = GatewayProvider(lambda: gateway.catalog, visibility=gateway.visibility)
    assert {t.name for t in await provider._list_tools()} == {SEARCH_TOOL, CALL_TOOL}

    # word150 is in the hidden tool_150 and the hidden gateway_secret_echo only.
    assert found(await call(gateway, SEARCH_TOOL, {"query": "word150"})) == []
    assert found(await call(gateway, SEARCH_TOOL, {"query": "word140"})) == ["many_tool_140"]
    assert found(await call(gateway, SEARCH_TOOL, {"query": "word040"})) == []  # not allowed
    every = await call(gateway, SEARCH_TOOL, {"query": "", "limit": 50})
    assert every["structuredContent"]["matches"] == 90  # tool_100..199 less tool_150..159
    assert all(gateway.visibility.allows(name) for name in found(every))

    for name in ("many_tool_150", "many_tool_040", "gateway_secret_echo"):
        answer = await call(gateway, CALL_TOOL, {"name": name, "arguments": {}})
        assert answer["content"] == unknown_tool_result(name)["content"]
        assert answer["isError"] is True
    assert hidden.calls == []


async def test_the_unknown_tool_answer_is_fastmcps_answer_to_a_direct_call() -> None:
    async with Client(FastMCP("plain"), mode="legacy") as client:
        direct = await client.call_tool_mcp("nothing_here", {})
    assert direct.is_error
    assert [c.model_dump() for c in direct.content] == [
        mcp_types.TextContent.model_validate(c).model_dump()
        for c in unknown_tool_result("nothing_here")["content"]
    ]


async def test_the_index_is_built_once_per_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    class Counted(SearchIndex):
        def __init__(self, tools: Any) -> None:
            super().__init__(tools)
            built.append(len(self))

    monkeypatch.setattr(search, "SearchIndex", Counted)
    gateway = make_gateway(backend_tools(150))
    for query in ("weather", "note", "word001"):
        await call(gateway, SEARCH_TOOL, {"query": query})
    assert built == [150]


# ---------------------------------------------------------------------------- switching


async def test_switches_with_the_catalog_size_and_announces_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_agg.components.search")
    gateway = make_gateway(backend_tools(5), max_listed_tools=5)
    provider = GatewayProvider(lambda: gateway.catalog)
    assert len(await provider._list_tools()) == 5
    assert gateway.catalog.tool(SEARCH_TOOL) is None
    announced: list[bool] = []

    async def announce(*, tools: bool, resources: bool, prompts: bool) -> None:
        announced.append(tools)

    gateway.announcer.announce = announce  # type: ignore[method-assign]

    async def rebuilt_to(count: int) -> list[str]:
        before = gateway.catalog
        set_listing(gateway, backend_tools(count))
        gateway.announcer.changed()
        with anyio.fail_after(5):
            while gateway.catalog is before:
                await anyio.sleep(0.01)
        return [t.name for t in await provider._list_tools()]

    async with anyio.create_task_group() as tg:
        tg.start_soon(gateway.announcer.run)
        assert await rebuilt_to(6) == [SEARCH_TOOL, CALL_TOOL]
        assert gateway.catalog.tool("many_tool_005") is not None  # still callable by name
        assert await rebuilt_to(7) == [SEARCH_TOOL, CALL_TOOL]
        assert len(await rebuilt_to(4)) == 4
        tg.cancel_scope.cancel()
    assert announced == [True, True, True]
    switches = [r.getMessage() for r in caplog.records]
    assert len(switches) == 2  # once each way
    assert "6 tools are more than max_listed_tools (5)" in switches[0]
    assert "4 tools: tools/list shows every tool again" in switches[1]


async def test_search_mode_on_a_small_catalog_and_no_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_agg.components.search")
    small = make_gateway(backend_tools(2), tool_mode="search")
    listed = await GatewayProvider(lambda: small.catalog)._list_tools()
    assert [t.name for t in listed] == [SEARCH_TOOL, CALL_TOOL]
    unlimited = make_gateway(backend_tools(300), max_listed_tools=0)
    assert len(await GatewayProvider(lambda: unlimited.catalog)._list_tools()) == 300
    default = make_gateway(backend_tools(129))
    assert len(await GatewayProvider(lambda: default.catalog)._list_tools()) == 2
    assert len(caplog.records) == 1  # the automatic switch only: the configured one is no news


async def test_a_call_through_the_call_tool_is_rate_limited_once() -> None:
    gateway = make_gateway(
        backend_tools(3),
        tool_mode="search",
        rate_limit={"requests_per_second": 0.001, "burst": 2},
    )
    echo = Echo(name="gateway_echo", parameters={"type": "object"})
    gateway.local_tools.append(lambda catalog: {echo.name: echo})
    gateway.catalog = gateway.assemble_catalog(strict=True)
    first = await call(gateway, CALL_TOOL, {"name": "gateway_echo"})
    second = await call(gateway, CALL_TOOL, {"name": "gateway_echo"})
    third = await call(gateway, CALL_TOOL, {"name": "gateway_echo"})
    # A burst of 2 allows two calls made through the call tool (each charged once).
    assert [r.get("isError", False) for r in (first, second, third)] == [False, False, True]
    assert "rate limit" in third["content"][0]["text"]
    assert len(echo.calls) == 2
