"""The MCP conformance suite's reference server, written with FastMCP.

Implements every tool, resource, template and prompt that the server scenarios of
``@modelcontextprotocol/conformance`` (0.1.16) call, with the names and content its
checks expect (read from the suite's compiled source), plus ``completion/complete``
and ``resources/subscribe``/``unsubscribe``, which FastMCP itself does not serve and
are registered here on the low-level SDK server.

    python conformance/backend.py                      # stdio (what the gateway spawns)
    python conformance/backend.py --http --port 8765   # streamable HTTP at /mcp

Over HTTP it keeps an in-memory event store, so ``test_reconnection`` can close the
SSE stream mid-call and the client resumes it with ``Last-Event-ID`` (SEP-1699), and
it rejects a non-localhost Host/Origin (DNS rebinding protection).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import struct
import warnings
import wave
import zlib
from typing import Any

import mcp_types
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Message
from fastmcp.resources import ResourceContent, ResourceResult
from fastmcp.tools import Tool, ToolResult

# Sampling, elicitation and logging are deprecated in the 2026-07-28 protocol era
# (SEP-2577); the handshake era the suite speaks still has them.
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*deprecated as of 2026-07-28.*")

# dereference_schemas=False: FastMCP inlines `$ref`s and drops `$defs` from listed input
# schemas by default, which json-schema-2020-12 checks are preserved.
mcp = FastMCP(name="conformance-backend", version="1.0.0", dereference_schemas=False)


def _png_1x1_red() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte + one red pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _wav_silence() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)  # 10 ms
    return buffer.getvalue()


PNG = _png_1x1_red()
PNG_B64 = base64.b64encode(PNG).decode()
WAV_B64 = base64.b64encode(_wav_silence()).decode()


def _image() -> mcp_types.ImageContent:
    return mcp_types.ImageContent(type="image", data=PNG_B64, mime_type="image/png")


def _text(text: str) -> mcp_types.TextContent:
    return mcp_types.TextContent(type="text", text=text)


def _embedded(uri: str, text: str, mime_type: str = "text/plain") -> mcp_types.EmbeddedResource:
    return mcp_types.EmbeddedResource(
        type="resource",
        resource=mcp_types.TextResourceContents(uri=uri, mime_type=mime_type, text=text),
    )


# ---------------------------------------------------------------------------------- tools


@mcp.tool(output_schema=None)
def test_simple_text() -> ToolResult:
    """Returns a simple text response."""
    return ToolResult(content=[_text("This is a simple text response for testing.")])


@mcp.tool(output_schema=None)
def test_image_content() -> ToolResult:
    """Returns a 1x1 red PNG image."""
    return ToolResult(content=[_image()])


@mcp.tool(output_schema=None)
def test_audio_content() -> ToolResult:
    """Returns a short silent WAV clip."""
    return ToolResult(
        content=[mcp_types.AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]
    )


@mcp.tool(output_schema=None)
def test_embedded_resource() -> ToolResult:
    """Returns an embedded text resource."""
    return ToolResult(
        content=[_embedded("test://embedded-resource", "This is an embedded resource content.")]
    )


@mcp.tool(output_schema=None)
def test_multiple_content_types() -> ToolResult:
    """Returns text, image and embedded resource content."""
    return ToolResult(
        content=[
            _text("Multiple content types test:"),
            _image(),
            _embedded(
                "test://mixed-content-resource",
                json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
                "application/json",
            ),
        ]
    )


@mcp.tool(output_schema=None)
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log notifications while it runs."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@mcp.tool(output_schema=None)
def test_error_handling() -> str:
    """Always fails with a tool error."""
    raise ToolError("This tool intentionally returns an error for testing")


@mcp.tool(output_schema=None)
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50 and 100 of 100."""
    await ctx.report_progress(0, 100)
    await asyncio.sleep(0.05)
    await ctx.report_progress(50, 100)
    await asyncio.sleep(0.05)
    await ctx.report_progress(100, 100)
    return "Tool with progress executed successfully"


@mcp.tool(output_schema=None)
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's LLM (sampling/createMessage) and returns its answer."""
    result = await ctx.session.create_message(
        [mcp_types.SamplingMessage(role="user", content=_text(prompt))],
        max_tokens=100,
        related_request_id=ctx.request_id,
    )
    content = result.content
    text = content.text if isinstance(content, mcp_types.TextContent) else str(content)
    return f"LLM response: {text}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> mcp_types.ElicitResult:
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


@mcp.tool(output_schema=None)
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user (elicitation/create) for a username and an email."""
    result = await _elicit(
        ctx,
        message,
        {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        },
    )
    return f"User response: action={result.action}, content={json.dumps(result.content)}"


@mcp.tool(output_schema=None)
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Elicitation whose schema has a default for every primitive type (SEP-1034)."""
    result = await _elicit(
        ctx,
        "Please review and update the form fields with defaults",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {
                    "type": "string",
                    "description": "User status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active",
                },
                "verified": {
                    "type": "boolean",
                    "description": "Verification status",
                    "default": True,
                },
            },
            "required": [],
        },
    )
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


@mcp.tool(output_schema=None)
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Elicitation with the five enum schema variants (SEP-1330)."""
    result = await _elicit(
        ctx,
        "Please select options from the enum fields",
        {
            "type": "object",
            "properties": {
                "untitledSingle": {
                    "type": "string",
                    "description": "Select one option",
                    "enum": ["option1", "option2", "option3"],
                },
                "titledSingle": {
                    "type": "string",
                    "description": "Select one option with titles",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "description": "Select one option (legacy)",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {
                    "type": "array",
                    "description": "Select multiple options",
                    "minItems": 1,
                    "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                },
                "titledMulti": {
                    "type": "array",
                    "description": "Select multiple options with titles",
                    "minItems": 1,
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
            "required": [],
        },
    )
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"


@mcp.tool(output_schema=None)
async def test_reconnection(ctx: Context) -> str:
    """Closes the SSE stream mid-call (HTTP only) so the client must resume it (SEP-1699)."""
    await asyncio.sleep(0.1)
    await ctx.close_sse_stream()  # a no-op over stdio or without an event store
    await asyncio.sleep(0.3)
    return "Reconnection test completed successfully"


class SchemaTool(Tool):
    """A tool whose input schema is given verbatim (FastMCP would derive it from a signature)."""

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(content=[_text(f"Received: {json.dumps(arguments, sort_keys=True)}")])


mcp.add_tool(
    SchemaTool(
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
        parameters={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
            },
            "additionalProperties": False,
        },
    )
)

# ------------------------------------------------------------------------------ resources


@mcp.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a 1x1 PNG)."""
    return PNG


@mcp.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients may subscribe to."""
    return "Watched resource content"


@mcp.resource("test://template/{id}/data", name="template-data", mime_type="application/json")
def template_data(id: str) -> ResourceResult:
    """A templated resource: substitutes {id}."""
    body = {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}
    return ResourceResult(
        [ResourceContent(json.dumps(body, separators=(",", ":")), mime_type="application/json")]
    )


# -------------------------------------------------------------------------------- prompts


@mcp.prompt
def test_simple_prompt() -> str:
    """A simple prompt without arguments."""
    return "This is a simple prompt for testing."


@mcp.prompt
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@mcp.prompt
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    """A prompt that embeds the given resource."""
    return [
        Message(_embedded(resourceUri, "Embedded resource content for testing.")),
        Message("Please process the embedded resource above."),
    ]


@mcp.prompt
def test_prompt_with_image() -> list[Message]:
    """A prompt with image content."""
    return [Message(_image()), Message("Please analyze the image above.")]


# ----------------------------------------------------------- completion and subscriptions

COMPLETIONS = {
    "arg1": ["paris", "park", "party", "test", "testing"],
    "arg2": ["alpha", "beta", "gamma"],
    "id": ["1", "2", "3", "123"],
}


@mcp.completion
def complete(
    ref: mcp_types.PromptReference | mcp_types.ResourceTemplateReference,
    argument: mcp_types.CompletionArgument,
    context: mcp_types.CompletionContext | None,
) -> mcp_types.Completion:
    candidates = [v for v in COMPLETIONS.get(argument.name, []) if v.startswith(argument.value)]
    return mcp_types.Completion(values=candidates, total=len(candidates), has_more=False)


# FastMCP serves neither resources/subscribe nor resources/unsubscribe: register them on
# the low-level SDK server, which then declares `resources.subscribe` (handshake era).
SUBSCRIPTIONS: set[str] = set()


async def _subscribe(ctx: Any, params: mcp_types.SubscribeRequestParams) -> mcp_types.EmptyResult:
    SUBSCRIPTIONS.add(str(params.uri))
    return mcp_types.EmptyResult()


async def _unsubscribe(
    ctx: Any, params: mcp_types.UnsubscribeRequestParams
) -> mcp_types.EmptyResult:
    SUBSCRIPTIONS.discard(str(params.uri))
    return mcp_types.EmptyResult()


mcp._mcp_server.add_request_handler(
    "resources/subscribe", mcp_types.SubscribeRequestParams, _subscribe
)
mcp._mcp_server.add_request_handler(
    "resources/unsubscribe", mcp_types.UnsubscribeRequestParams, _unsubscribe
)

# ----------------------------------------------------------------------------------- main


def serve_http(host: str, port: int) -> None:
    import uvicorn
    from fastmcp.server.event_store import EventStore

    app = mcp.http_app(
        event_store=EventStore(),
        retry_interval=500,  # ms: how soon the client reconnects after test_reconnection
        host_origin_protection="auto",
        allowed_hosts=[host],
    )
    uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1)
    ).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if args.http:
        serve_http(args.host, args.port)
    else:
        mcp.run(show_banner=False)


if __name__ == "__main__":
    main()
