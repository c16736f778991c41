"""The two protocol eras, bridged both ways through the gateway, and cache hints relayed.

Real processes: the gateway (`mcp-agg serve`, streamable HTTP and stdio) in front of
`@modelcontextprotocol/server-everything` over stdio (a TypeScript SDK server, handshake
era only, which asks for sampling and elicitation mid-call), `backends/eras.py` (a
FastMCP server the gateway speaks 2026-07-28 to, which asks with input-required
results and sends cache hints) and `backends/listening.py` (the SDK's own server, which
the gateway speaks 2026-07-28 to by default: progress, logs, cancellation and changes
on a `subscriptions/listen` stream).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    eventually,
    free_port,
    node_server,
    served_gateway,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

MODERN = "2026-07-28"
#: How long the gateway waits for a client to come back with its answers.
REQUEST_TIMEOUT = 6


@dataclass
class Setup:
    config: Path
    url: str
    events: Path

    def events_seen(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("eras")
    events = folder / "events.txt"
    config = folder / "servers.toml"
    everything = node_server("mcp-server-everything", "stdio")
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = {REQUEST_TIMEOUT}
expose_gateway_tools = true

[[servers]]
name = "everything"
command = "{everything[0]}"
args = {json.dumps(everything[1:])}

[[servers]]
name = "eras"
command = "python"
args = ["{BACKENDS / "eras.py"}", "--events-file", "{events}", "--ttl", "60"]
protocol = "modern"

[[servers]]
name = "listening"
command = "python"
args = ["{BACKENDS / "listening.py"}", "--events-file", "{events}"]
"""
    )
    with served_gateway(config) as (url, _):
        yield Setup(config, url, events)


@dataclass
class Answers:
    """The client's side: what it was asked, and what it answers."""

    asked: list[str] = field(default_factory=list)
    logs: list[tuple[str, Any]] = field(default_factory=list)
    notifications: list[Any] = field(default_factory=list)

    async def log(self, message: Any) -> None:
        self.logs.append((message.level, message.data))

    async def on_message(self, message: Any) -> None:
        self.notifications.append(message)

    async def elicit(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.asked.append(f"elicit {message}")
        required = params.requested_schema.get("required", [])
        return ElicitResult(action="accept", content=dict.fromkeys(required, "forty-two"))

    async def sample(self, messages: Any, params: Any, context: Any) -> str:
        self.asked.append("sample")
        return f"sampled: {messages[0].content.text}"


def client_of(setup: Setup, front: str, mode: str, answers: Answers) -> Client[Any]:
    transport: Any
    if front == "stdio":
        transport = StdioTransport(
            PYTHON, ["-m", "mcp_agg", "serve", "-c", str(setup.config)], keep_alive=False
        )
    else:
        transport = StreamableHttpTransport(setup.url)
    return Client(
        transport,
        mode=mode,  # type: ignore[arg-type]
        timeout=30,
        elicitation_handler=answers.elicit,
        sampling_handler=answers.sample,
        log_handler=answers.log,
        message_handler=answers.on_message,
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def modern(setup: Setup) -> AsyncIterator[Client[Any]]:
    """A modern-era client of the HTTP front."""
    async with client_of(setup, "http", "auto", Answers()) as client:
        assert client.protocol_version == MODERN
        yield client


def text(result: mcp_types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


async def replicas(client: Client[Any]) -> dict[str, Any]:
    """Every replica's status (`gateway_health`), by id."""
    health = await client.call_tool_mcp("gateway_health", {})
    assert health.structured_content is not None
    return {r["id"]: r for r in health.structured_content["replicas"]}


async def test_each_backend_speaks_the_era_asked_for(modern: Client[Any]) -> None:
    """`auto`: the newest era each supports; `modern` pinned; status says which."""
    eras = {replica: r["protocol_version"] for replica, r in (await replicas(modern)).items()}
    assert eras == {"everything-1": "2025-11-25", "eras-1": MODERN, "listening-1": MODERN}


@pytest.mark.parametrize("front", ["http", "stdio"])
async def test_a_handshake_backend_asks_a_modern_client(setup: Setup, front: str) -> None:
    answers = Answers()
    async with client_of(setup, front, "auto", answers) as client:
        assert client.protocol_version == MODERN
        sampled = await client.call_tool_mcp(
            "everything_trigger-sampling-request", {"prompt": "hello"}
        )
        elicited = await client.call_tool_mcp("everything_trigger-elicitation-request", {})
    assert not sampled.is_error, text(sampled)
    assert "sampled: Resource trigger-sampling-request context: hello" in text(sampled)
    assert not elicited.is_error, text(elicited)
    assert "forty-two" in text(elicited)
    assert answers.asked[0] == "sample"
    assert answers.asked[1].startswith("elicit ")


async def test_a_modern_backend_asks_a_handshake_client(setup: Setup) -> None:
    answers = Answers()
    async with client_of(setup, "http", "legacy", answers) as client:
        assert client.protocol_version != MODERN
        result = await client.call_tool_mcp("eras_ask", {"question": "the answer?"})
    assert not result.is_error, text(result)
    assert text(result) == "forty-two / sampled: forty-two"
    assert answers.asked == ["elicit the answer?", "sample"]


async def test_a_modern_backend_round_passes_through_to_a_modern_client(
    setup: Setup, modern: Client[Any]
) -> None:
    first = await modern.session.call_tool(
        "eras_ask", {"question": "the answer?"}, allow_input_required=True
    )
    # The backend's own round, keyed as the backend keyed it.
    assert isinstance(first, mcp_types.InputRequiredResult)
    assert first.input_requests is not None
    assert list(first.input_requests) == ["question"]
    result = await modern.call_tool_mcp("eras_ask", {"question": "the answer?"})
    assert not result.is_error, text(result)
    assert text(result) == "forty-two / sampled: forty-two"
    assert "ask sampled" in setup.events_seen()


async def test_a_tampered_request_state_is_refused(modern: Client[Any]) -> None:
    name = "everything_trigger-elicitation-request"
    first = await modern.session.call_tool(name, {}, allow_input_required=True)
    assert isinstance(first, mcp_types.InputRequiredResult)
    assert first.request_state is not None
    assert first.input_requests
    state = first.request_state
    tampered = state[:-4] + ("AAAA" if not state.endswith("AAAA") else "BBBB")
    responses: dict[str, Any] = {
        key: mcp_types.ElicitResult(action="decline") for key in first.input_requests
    }
    with pytest.raises(MCPError, match="Invalid or expired requestState"):
        await modern.session.call_tool(name, {}, input_responses=responses, request_state=tampered)
    # The genuine state still finishes the call.
    done = await modern.session.call_tool(
        name, {}, input_responses=responses, request_state=state, allow_input_required=True
    )
    assert isinstance(done, mcp_types.CallToolResult)
    assert "declined" in text(done)


async def test_an_abandoned_round_is_freed_within_its_deadline(modern: Client[Any]) -> None:
    name = "everything_trigger-elicitation-request"
    first = await modern.session.call_tool(name, {}, allow_input_required=True)
    assert isinstance(first, mcp_types.InputRequiredResult)

    async def everything_in_flight() -> int:
        return int((await replicas(modern))["everything-1"]["in_flight"])

    assert await everything_in_flight() == 1  # the backend call waits for the client
    # Never answered: the call is cancelled once the client has been away that long.
    in_flight = -1

    async def freed() -> bool:
        nonlocal in_flight
        in_flight = await everything_in_flight()
        return in_flight == 0

    await eventually(freed, "the parked call to be cancelled", timeout=REQUEST_TIMEOUT + 10)
    responses: dict[str, Any] = {
        key: mcp_types.ElicitResult(action="decline") for key in first.input_requests or {}
    }
    with pytest.raises(MCPError, match="Invalid or expired requestState"):
        await modern.session.call_tool(
            name, {}, input_responses=responses, request_state=first.request_state
        )


async def test_cache_hints_of_a_modern_backend_reach_a_modern_client(setup: Setup) -> None:
    """Through a gateway whose only backend is the modern one: its hints, as sent."""
    config = setup.config.with_name("eras-only.toml")
    config.write_text(
        f"""
[[servers]]
name = "eras"
command = "python"
args = ["{BACKENDS / "eras.py"}", "--events-file", "{setup.events}", "--ttl", "60"]
"""
    )
    async with Client(
        StdioTransport(PYTHON, ["-m", "mcp_agg", "serve", "-c", str(config)], keep_alive=False)
    ) as client:
        assert client.protocol_version == MODERN
        session = client.session
        read = await session.read_resource("data://eras/fact")
        answers = [
            read,
            await session.list_tools(),
            await session.list_resources(),
            await session.list_resource_templates(),
            await session.list_prompts(),
        ]
    assert [(a.ttl_ms, a.cache_scope) for a in answers] == [(60_000, "public")] * 5


async def test_a_merged_list_is_as_fresh_as_its_stalest_part(modern: Client[Any]) -> None:
    """Tools of both backends: the handshake-era one says nothing, which is `ttlMs: 0`."""
    tools = await modern.session.list_tools()
    names = [tool.name for tool in tools.tools]
    assert "eras_ask" in names
    assert "everything_echo" in names
    assert (tools.ttl_ms, tools.cache_scope) == (0, "private")
    read = await modern.session.read_resource("data://eras/fact")
    assert (read.ttl_ms, read.cache_scope) == (60_000, "public")


# ------------------------------------------ a modern-era backend's progress, logs, changes

_names = itertools.count()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_progress_and_logs_of_a_modern_backend_reach_the_caller(
    setup: Setup, mode: str
) -> None:
    answers = Answers()
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with client_of(setup, "http", mode, answers) as client:
        result = await client.call_tool_mcp(
            "listening_steps", {"count": 2}, progress_handler=on_progress
        )
        assert not result.is_error, text(result)
        await eventually(lambda: len(seen) == 2, "two progress notifications")
        await eventually(lambda: len(answers.logs) >= 3, "three log messages")
        prompt = await client.get_prompt("listening_greet", {"name": "Ada"})
        await eventually(lambda: len(answers.logs) >= 4, "the prompt's log message")
    assert seen == [(1, 2, "step 1"), (2, 2, "step 2")]
    assert [(level, data) for level, data in answers.logs] == [
        ("debug", "debug line"),
        ("info", "info line"),
        ("warning", "warning line"),
        ("info", "prompt line"),
    ]
    assert isinstance(prompt.messages[0].content, mcp_types.TextContent)
    assert prompt.messages[0].content.text == "Say hello to Ada"


async def test_cancelling_a_call_cancels_the_modern_backends_request(
    setup: Setup, modern: Client[Any]
) -> None:
    before = setup.events_seen().count("cancelled wait")
    with pytest.raises((MCPError, TimeoutError)):
        await modern.call_tool_mcp("listening_wait", {"seconds": 60}, timeout=1.0)
    await eventually(
        lambda: setup.events_seen().count("cancelled wait") > before,
        "the backend to see the cancellation",
    )


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_modern_backends_new_tool_is_announced(setup: Setup, mode: str) -> None:
    """The backend says so on the gateway's listen stream; the gateway tells its clients
    the way each era hears it."""
    name = f"added{next(_names)}{mode}"
    answers = Answers()
    async with client_of(setup, "http", mode, answers) as client:
        if mode == "legacy":
            assert not (await client.call_tool_mcp("listening_grow", {"name": name})).is_error
            await eventually(
                lambda: any(
                    isinstance(n, mcp_types.ToolListChangedNotification)
                    for n in answers.notifications
                ),
                "tools/list_changed",
            )
        else:
            async with listen(client.session, tools_list_changed=True) as stream:
                assert not (await client.call_tool_mcp("listening_grow", {"name": name})).is_error
                with anyio.fail_after(15):
                    assert await anext(aiter(stream)) == ToolsListChanged()
        tools = await client.list_tools()
        assert f"listening_{name}" in {t.name for t in tools}
        added = await client.call_tool_mcp(f"listening_{name}", {})
    assert text(added) == f"I am {name}"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_modern_backends_resource_updates_reach_subscribers(
    setup: Setup, mode: str
) -> None:
    uri = "counter://value"  # as the backend wrote it (docs/uris.md)
    answers = Answers()
    async with client_of(setup, "http", mode, answers) as client:
        if mode == "legacy":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.session.subscribe_resource(uri)
            await client.call_tool_mcp("listening_bump", {})
            updates = await eventually(
                lambda: [
                    n
                    for n in answers.notifications
                    if isinstance(n, mcp_types.ResourceUpdatedNotification)
                ],
                "a resources/updated notification",
            )
            assert str(updates[0].params.uri) == uri
        else:
            async with listen(client.session, resource_subscriptions=[uri]) as stream:
                await client.call_tool_mcp("listening_bump", {})
                with anyio.fail_after(15):
                    assert await anext(aiter(stream)) == ResourceUpdated(uri=uri)


@pytest.fixture(scope="module")
def speaks_both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """The gateway in front of a FastMCP server (`backends/protocol.py`) over streamable
    HTTP, which speaks both eras and asks imperatively (`ctx.elicit`) only on the
    handshake era."""
    folder = tmp_path_factory.mktemp("both")
    config = folder / "servers.toml"
    port = free_port()
    config.write_text(
        f"""
[gateway]
expose_gateway_tools = true

[[servers]]
name = "both"
command = "python"
args = ["{BACKENDS / "protocol.py"}", "--events-file", "{folder / "events.txt"}",
        "--transport", "http", "--port", "{port}"]
url = "http://127.0.0.1:{port}/mcp"
"""
    )
    with served_gateway(config) as (url, _):
        yield Setup(config, url, folder / "events.txt")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_each_client_meets_the_backend_in_its_own_era(speaks_both: Setup, mode: str) -> None:
    """What a client of either era gets from a backend that speaks both is what it gets
    directly: a handshake-era client is served on the replica's handshake-era session
    (its `ctx.elicit` works), a modern-era one on the replica's own 2026-07-28 session
    (where that FastMCP server refuses to ask imperatively). The direct client runs the
    server over stdio: what a tool does does not depend on the transport."""
    direct_answers, answers = Answers(), Answers()
    direct = Client(
        StdioTransport(
            PYTHON,
            [str(BACKENDS / "protocol.py"), "--events-file", str(speaks_both.events)],
            keep_alive=False,
        ),
        mode=mode,  # type: ignore[arg-type]
        timeout=30,
        elicitation_handler=direct_answers.elicit,
    )
    async with direct:
        expected = await direct.call_tool_mcp("ask", {"question": "the answer?"})
    for front in ("http", "stdio"):
        async with client_of(speaks_both, front, mode, answers) as client:
            result = await client.call_tool_mcp("both_ask", {"question": "the answer?"})
            eras = {r: s["protocol_version"] for r, s in (await replicas(client)).items()}
        assert eras == {"both-1": MODERN}  # the replica's own session: the newest era
        assert result.is_error == expected.is_error, (text(result), text(expected))
        if mode == "legacy":
            assert text(result) == text(expected) == "accept: forty-two"
    assert len(answers.asked) == 2 * len(direct_answers.asked)


async def test_a_handshake_clients_log_level_reaches_the_handshake_era_session(
    speaks_both: Setup,
) -> None:
    """`logging/setLevel` after the replica's handshake-era session opened still reaches
    it: the backend sends what the new level asks for."""
    answers = Answers()

    def info_logged() -> bool:
        return any(data == {"msg": "info line", "extra": None} for _, data in answers.logs)

    warnings.simplefilter("ignore", MCPDeprecationWarning)  # setLevel, on purpose
    async with client_of(speaks_both, "http", "legacy", answers) as client:
        await client.session.set_logging_level("error")
        await client.call_tool_mcp("both_steps", {"count": 1})  # opens the session
        assert answers.logs == []
        await client.session.set_logging_level("info")
        await client.call_tool_mcp("both_steps", {"count": 1})
        await eventually(info_logged, "the info line")
