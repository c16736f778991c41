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
from fastmcp.prompts import Message, Prompt
from fastmcp.resources import ResourceContent, ResourceResult
from fastmcp.tools import Tool, ToolResult
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

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
                    "$anchor": "addressDef",
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"},
            },
            # SEP-2106 (2026-07-28): composition and conditional keywords are kept.
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {
                "properties": {"contactMethod": {"const": "phone"}},
                "required": ["contactMethod"],
            },
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": False,
        },
    )
)

# SEP-2243 (2026-07-28): a parameter mirrored into an `Mcp-Param-Region` header, which
# the SDK's modern HTTP entry checks against the body (Base64 forms included).
mcp.add_tool(
    SchemaTool(
        name="test_custom_header",
        description="Tool whose `region` argument is mirrored into the Mcp-Param-Region header",
        parameters={
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["region"],
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


# ------------------------------------------ 2026-07-28: input-required results (SEP-2322)
# A tool or prompt asks the client for input by returning an InputRequiredResult; the
# client answers in `inputResponses` on a retry of the same request. FastMCP seals the
# `requestState` on the wire (an ephemeral AES-GCM key), so a tampered one is refused
# before the handler runs. Only a modern-era connection can carry these results.


def _ask_name(message: str = "What is your name?", field: str = "name") -> mcp_types.ElicitRequest:
    return _elicit_request(message, {field: {"type": "string"}}, [field])


def _elicit_request(
    message: str, properties: dict[str, Any], required: list[str]
) -> mcp_types.ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": required}
    return mcp_types.ElicitRequest(
        params=mcp_types.ElicitRequestFormParams(message=message, requested_schema=schema)
    )


def _sample_request(text: str, max_tokens: int) -> mcp_types.CreateMessageRequest:
    return mcp_types.CreateMessageRequest(
        params=mcp_types.CreateMessageRequestParams(
            messages=[mcp_types.SamplingMessage(role="user", content=_text(text))],
            max_tokens=max_tokens,
        )
    )


def _ask(
    requests: dict[str, Any], state: dict[str, Any] | None = None
) -> mcp_types.InputRequiredResult:
    return mcp_types.InputRequiredResult(
        input_requests=requests,
        request_state=json.dumps(state) if state is not None else None,
    )


def _answer(ctx: Context, key: str) -> dict[str, Any] | None:
    """The client's answer to input request `key`, as wire JSON, if it gave one."""
    answer = (ctx.input_responses or {}).get(key)
    return None if answer is None else answer.model_dump(by_alias=True, mode="json")


def _state(ctx: Context) -> dict[str, Any]:
    state = json.loads(ctx.request_state) if ctx.request_state else {}
    return state if isinstance(state, dict) else {}


def _form_field(answer: dict[str, Any], field: str) -> str:
    return str((answer.get("content") or {}).get(field, ""))


def _sampled_text(answer: dict[str, Any]) -> str:
    content = answer.get("content")
    return str(content.get("text", "")) if isinstance(content, dict) else ""


Asked = ToolResult | mcp_types.InputRequiredResult


@mcp.tool(output_schema=None)
def test_input_required_result_elicitation(ctx: Context) -> Asked:
    """Asks for the user's name with an elicitation input request."""
    answer = _answer(ctx, "user_name")
    if answer is None:  # first round, or a retry that did not answer: ask (again)
        return _ask({"user_name": _ask_name()})
    return ToolResult(content=[_text(f"Hello, {_form_field(answer, 'name')}!")])


@mcp.tool(output_schema=None)
def test_input_required_result_sampling(ctx: Context) -> Asked:
    """Asks the client's LLM with a sampling input request."""
    answer = _answer(ctx, "sample_request")
    if answer is None:
        return _ask({"sample_request": _sample_request("What is the capital of France?", 100)})
    return ToolResult(content=[_text(f"Sampling result: {_sampled_text(answer)}")])


@mcp.tool(output_schema=None)
def test_input_required_result_list_roots(ctx: Context) -> Asked:
    """Asks for the client's roots with a roots/list input request."""
    answer = _answer(ctx, "roots_request")
    if answer is None:
        return _ask({"roots_request": mcp_types.ListRootsRequest()})
    return ToolResult(content=[_text(f"Found {len(answer.get('roots') or [])} root(s)")])


@mcp.tool(output_schema=None)
def test_input_required_result_request_state(ctx: Context) -> Asked:
    """Asks for a confirmation, carrying requestState across the round trip."""
    answer = _answer(ctx, "confirm")
    confirmed = answer is not None and (answer.get("content") or {}).get("ok") is True
    if confirmed and _state(ctx).get("kind") == "request-state":
        return ToolResult(content=[_text("state-ok: requestState validated")])
    confirm = _elicit_request("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
    return _ask({"confirm": confirm}, {"kind": "request-state"})


@mcp.tool(output_schema=None)
def test_input_required_result_multiple_inputs(ctx: Context) -> Asked:
    """Asks for an elicitation, a sampling and a roots/list answer at once."""
    name, greeting, roots = (_answer(ctx, k) for k in ("user_name", "greeting", "client_roots"))
    if _state(ctx).get("kind") == "multiple-inputs" and name and greeting and roots:
        text = (
            f"Name: {_form_field(name, 'name')}; Greeting: {_sampled_text(greeting)}; "
            f"Roots: {len(roots.get('roots') or [])}"
        )
        return ToolResult(content=[_text(text)])
    return _ask(
        {
            "user_name": _ask_name(),
            "greeting": _sample_request("Generate a greeting", 50),
            "client_roots": mcp_types.ListRootsRequest(),
        },
        {"kind": "multiple-inputs"},
    )


@mcp.tool(output_schema=None)
def test_input_required_result_multi_round(ctx: Context) -> Asked:
    """Two rounds of questions: a name, then a colour; the state carries the name."""
    state = _state(ctx)
    step1, step2 = _answer(ctx, "step1"), _answer(ctx, "step2")
    if state.get("round") == 2 and step2 is not None:
        color = _form_field(step2, "color")
        return ToolResult(
            content=[_text(f"Multi-round complete for {state['name']} who likes {color}")]
        )
    if state.get("round") == 1 and step1 is not None:
        step = _elicit_request(
            "Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"]
        )
        return _ask({"step2": step}, {"round": 2, "name": _form_field(step1, "name")})
    return _ask({"step1": _ask_name("Step 1: What is your name?")}, {"round": 1})


@mcp.tool(output_schema=None)
def test_input_required_result_tampered_state(ctx: Context) -> Asked:
    """Asks for a confirmation; the sealed requestState must come back untouched."""
    if _state(ctx).get("kind") == "tamper-test" and _answer(ctx, "confirm") is not None:
        return ToolResult(content=[_text("integrity-ok: state verified")])
    confirm = _elicit_request("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
    return _ask({"confirm": confirm}, {"kind": "tamper-test"})


@mcp.tool(output_schema=None)
def test_input_required_result_capabilities(ctx: Context) -> Asked:
    """Asks only for the kinds of input the client declared it can give."""
    if ctx.input_responses:
        return ToolResult(
            content=[_text(f"capabilities-ok: received {','.join(ctx.input_responses)}")]
        )
    caps = ctx.session.client_capabilities
    requests: dict[str, Any] = {}
    if caps is not None and caps.elicitation is not None:
        requests["elicit_input"] = _elicit_request(
            "Elicitation input", {"value": {"type": "string"}}, ["value"]
        )
    if caps is not None and caps.sampling is not None:
        requests["sample_input"] = _sample_request("Sample request", 50)
    if not requests:
        return ToolResult(content=[_text("No supported capabilities declared")])
    return _ask(requests, {"kind": "capabilities-test"})


@mcp.prompt
def test_input_required_result_prompt(
    ctx: Context,
) -> list[Message] | mcp_types.InputRequiredResult:
    """A prompt that first asks the user for its context (SEP-2322 beyond tools)."""
    answer = _answer(ctx, "user_context")
    if answer is None:
        return _ask(
            {
                "user_context": _elicit_request(
                    "What context should the prompt use?",
                    {"context": {"type": "string"}},
                    ["context"],
                )
            }
        )
    return [Message(f"Prompt with context: {_form_field(answer, 'context')}")]


@mcp.tool(output_schema=None)
def test_missing_capability(ctx: Context) -> str:
    """Needs the client's sampling capability: -32021 (HTTP 400) without it (SEP-2575)."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.sampling is None:
        raise MCPError(
            mcp_types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            "MissingRequiredClientCapabilityError",
            data={"requiredCapabilities": {"sampling": {}}},
        )
    return "Success"


# -------------------------------------------- 2026-07-28: listen streams (SEP-2575)
# FastMCP does not serve subscriptions/listen: the SDK's ListenHandler over a bus does,
# and with it registered the modern era's server/discover declares tools/prompts
# `listChanged`. Each trigger tool adds or removes a tool (a prompt) and announces it:
# on listen streams (modern era), and on the session (handshake era, e.g. the gateway's
# connection to this backend over stdio). FastMCP's add/remove announce nothing.
BUS = InMemorySubscriptionBus()
mcp._mcp_server.add_request_handler(
    "subscriptions/listen", mcp_types.SubscriptionsListenRequestParams, ListenHandler(BUS)
)


def test_dynamic_tool() -> str:
    """A tool test_trigger_tool_change adds and removes."""
    return "dynamic"


def test_dynamic_prompt() -> str:
    """A prompt test_trigger_prompt_change adds and removes."""
    return "dynamic"


async def _announce(ctx: Context, event: ToolsListChanged | PromptsListChanged) -> None:
    await BUS.publish(event)
    if ctx.session.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        if isinstance(event, ToolsListChanged):
            await ctx.session.send_tool_list_changed()
        else:
            await ctx.session.send_prompt_list_changed()


@mcp.tool(output_schema=None)
async def test_trigger_tool_change(ctx: Context) -> str:
    """Adds test_dynamic_tool, or removes it if there, and announces the change."""
    names = {tool.name for tool in await mcp.list_tools()}
    if test_dynamic_tool.__name__ in names:
        mcp.local_provider.remove_tool(test_dynamic_tool.__name__)
    else:
        mcp.add_tool(test_dynamic_tool)
    await _announce(ctx, ToolsListChanged())
    return "Mutation triggered"


@mcp.tool(output_schema=None)
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Adds test_dynamic_prompt, or removes it if there, and announces the change."""
    names = {prompt.name for prompt in await mcp.list_prompts()}
    if test_dynamic_prompt.__name__ in names:
        mcp.local_provider.remove_prompt(test_dynamic_prompt.__name__)
    else:
        mcp.add_prompt(Prompt.from_function(test_dynamic_prompt))
    await _announce(ctx, PromptsListChanged())
    return "Mutation triggered"


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
