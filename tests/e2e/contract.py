"""What every front (stdio, streamable HTTP) must do, written once and run against each."""

from __future__ import annotations

import re
from typing import Any

import anyio
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import Front
from tests.e2e.procs import PYTHON, SERVERS

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def text_of(result: mcp_types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


class GatewayContract:
    """Tests take a `front` fixture: a client connected to a running gateway."""

    async def test_lists_every_backend_under_its_namespace(self, front: Front) -> None:
        names = {tool.name for tool in await front.client.list_tools()}
        for expected in (
            "notes_add_note",  # stdio
            "units_convert",  # stdio
            "web_echo",  # streamable HTTP
            "events_echo",  # SSE
            "time_get_current_time",  # third-party (PyPI mcp-server-time)
            "wrapped_multiply",  # stdio behind a launcher process
        ):
            assert expected in names
        assert not any(name.startswith("broken_") for name in names)
        assert all(NAME.match(name) for name in names), names

    async def test_definitions_pass_through_unchanged(self, front: Front) -> None:
        via_gateway = {t.name: t for t in await front.client.list_tools()}
        direct_transport = StdioTransport(command=PYTHON, args=[str(SERVERS / "units.py")])
        async with Client(direct_transport) as direct:
            for tool in await direct.list_tools():
                exposed = via_gateway[f"units_{tool.name}"]
                assert exposed.description == tool.description
                assert exposed.input_schema == tool.input_schema
                assert exposed.output_schema == tool.output_schema
                assert exposed.annotations == tool.annotations
                assert exposed.meta == tool.meta

    @pytest.mark.parametrize(
        ("tool", "arguments", "expected"),
        [
            ("units_add", {"a": 2, "b": 3.5}, "5.5"),
            ("web_echo", {"text": 'über ☃ \n "quoted"'}, 'über ☃ \n "quoted"'),
            ("events_echo", {"text": "over sse"}, "over sse"),
            ("wrapped_multiply", {"a": 6, "b": 7}, "42.0"),
        ],
    )
    async def test_calls_reach_each_backend_and_return_verbatim(
        self, front: Front, tool: str, arguments: dict[str, Any], expected: str
    ) -> None:
        result = await front.client.call_tool_mcp(tool, arguments)
        assert result.is_error is False
        assert text_of(result) == expected

    async def test_structured_content_is_relayed(self, front: Front) -> None:
        result = await front.client.call_tool_mcp(
            "units_convert", {"value": 1, "from_unit": "mi", "to_unit": "m"}
        )
        assert result.structured_content == {
            "value": 1.0,
            "from_unit": "mi",
            "to_unit": "m",
            "result": 1609.344,
            "dimension": "length",
        }

    async def test_third_party_server_works(self, front: Front) -> None:
        result = await front.client.call_tool_mcp("time_get_current_time", {"timezone": "UTC"})
        assert result.is_error is False
        assert '"timezone": "UTC"' in text_of(result) or '"timezone":"UTC"' in text_of(result)

    @pytest.mark.parametrize(
        ("tool", "arguments", "message"),
        [
            ("units_divide", {"a": 1, "b": 0}, "division by zero"),
            ("web_fail", {"message": "the backend says no"}, "the backend says no"),
            ("notes_read_note", {"title": "never written"}, "no note titled 'never written'"),
        ],
    )
    async def test_tool_error_arrives_as_that_tool_error(
        self, front: Front, tool: str, arguments: dict[str, Any], message: str
    ) -> None:
        result = await front.client.call_tool_mcp(tool, arguments)
        assert result.is_error is True
        assert text_of(result) == message
        assert result.structured_content is None

    async def test_unknown_tool_is_an_error(self, front: Front) -> None:
        result = await front.client.call_tool_mcp("nope_nothing", {})
        assert result.is_error is True
        assert "nope_nothing" in text_of(result)

    async def test_resources_and_templates(self, front: Front) -> None:
        client = front.client
        added = await client.call_tool_mcp(
            "notes_add_note", {"title": "groceries", "body": "milk\neggs — fresh"}
        )
        assert added.is_error is False
        uris = {str(r.uri) for r in await client.list_resources()}
        # URIs as the backends list them; of the two clock servers' `clock://zones`, the
        # first keeps it and the second's is prefixed.
        assert {
            "notes://index",
            "units://list",
            "clock://zones",
            "clock://events/zones",
        } <= uris
        templates = {t.uri_template for t in await client.list_resource_templates()}
        assert "notes://note/{title}" in templates

        index = await client.read_resource_mcp("notes://index")
        assert "groceries" in index.contents[0].text  # type: ignore[union-attr]
        assert index.contents[0].uri == "notes://index"
        zones = await client.read_resource_mcp("clock://events/zones")
        assert zones.contents[0].uri == "clock://events/zones"
        note = await client.read_resource_mcp("notes://note/groceries")
        assert note.contents[0].text == "milk\neggs — fresh"  # type: ignore[union-attr]
        assert note.contents[0].mime_type == "text/markdown"

        with pytest.raises(MCPError, match="no note titled 'missing'"):
            await client.read_resource_mcp("notes://note/missing")

    async def test_prompts(self, front: Front) -> None:
        client = front.client
        await client.call_tool_mcp("notes_add_note", {"title": "plan", "body": "ship it"})
        prompts = {p.name: p for p in await client.list_prompts()}
        assert {"notes_summarize_note", "units_explain_conversion"} <= set(prompts)
        arguments = {a.name for a in prompts["notes_summarize_note"].arguments or []}
        assert arguments == {"title", "style"}
        result = await client.get_prompt_mcp(
            "notes_summarize_note", {"title": "plan", "style": "haiku"}
        )
        text = result.messages[0].content.text  # type: ignore[union-attr]
        assert "ship it" in text
        assert "haiku" in text

    async def test_concurrent_calls_all_complete(self, front: Front) -> None:
        results: dict[int, str] = {}

        async def one(i: int) -> None:
            result = await front.client.call_tool_mcp("web_echo", {"text": f"call {i}"})
            results[i] = text_of(result)

        async with anyio.create_task_group() as tg:
            for i in range(32):
                tg.start_soon(one, i)
        assert results == {i: f"call {i}" for i in range(32)}
