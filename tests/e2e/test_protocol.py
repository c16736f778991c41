"""Protocol transparency: what a client can do with a backend directly works through the
gateway, in both protocol eras, over both fronts, for stdio and HTTP backends.

Every scenario runs against real processes: the gateway (`mcp-agg serve`, stdio or
streamable HTTP) in front of `backends/protocol.py` twice, once as a stdio backend
(`ps`) and once as a streamable HTTP backend the test runs (`ph`).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.elicitation import ElicitResult
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport, StreamableHttpTransport
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    backend_process,
    eventually,
    free_port,
    open_session,
    served_gateway,
    sse_events,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

BACKEND = BACKENDS / "protocol.py"
BACKENDS = ["ps", "ph"]  # the stdio backend and the HTTP backend
FRONTS = [("stdio", "legacy"), ("stdio", "auto"), ("http", "legacy"), ("http", "auto")]
_names = itertools.count()


@dataclass
class Setup:
    config: Path
    events: Path
    http_url: str

    def events_seen(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("protocol")
    events = folder / "events.txt"
    backend_port = free_port()
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 30

# The backend asks, announces and takes subscriptions the handshake era's way (a
# FastMCP server refuses `ctx.elicit` on the modern era): the gateway speaks that era
# to it. Modern-era backends: test_eras.py.
[[servers]]
name = "ps"
command = "python"
args = ["{BACKEND}", "--events-file", "{events}"]
protocol = "legacy"

[[servers]]
name = "ph"
url = "http://127.0.0.1:{backend_port}/mcp"
protocol = "legacy"
"""
    )
    with (
        backend_process(
            BACKEND,
            "--events-file",
            str(events),
            "--transport",
            "http",
            port=backend_port,
            timeout=60,
        ),
        served_gateway(config) as (url, _),
    ):
        yield Setup(config, events, url)


class Recorder(MessageHandler):
    """What the client received besides results, and its answers to server requests."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, Any]] = []
        self.notifications: list[mcp_types.ServerNotification] = []
        self.requests: list[str] = []

    async def on_notification(self, message: mcp_types.ServerNotification) -> None:
        self.notifications.append(message)

    async def log(self, message: Any) -> None:
        self.logs.append((message.level, message.data))

    async def elicit(self, message: str, response_type: Any, params: Any, context: Any) -> Any:
        self.requests.append(f"elicit {message}")
        return response_type(value="forty-two") if response_type else ElicitResult(action="accept")

    async def sample(self, messages: Any, params: Any, context: Any) -> str:
        self.requests.append("sample")
        return f"sampled: {messages[0].content.text}"

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [n for n in self.notifications if isinstance(n, kind)]


@dataclass
class Session:
    client: Client[Any]
    recorder: Recorder
    front: str
    mode: str
    era: str = field(init=False)

    def __post_init__(self) -> None:
        self.era = str(self.client.protocol_version)

    @property
    def handshake(self) -> bool:
        return self.era.startswith("2025-")


@pytest_asyncio.fixture(
    loop_scope="module", scope="module", params=FRONTS, ids=["-".join(f) for f in FRONTS]
)
async def session(request: pytest.FixtureRequest, setup: Setup) -> AsyncIterator[Session]:
    front, mode = request.param
    recorder = Recorder()
    transport: Any
    if front == "stdio":
        transport = StdioTransport(
            PYTHON, ["-m", "mcp_agg", "serve", "-c", str(setup.config)], keep_alive=False
        )
    else:
        transport = StreamableHttpTransport(setup.http_url)
    client: Client[Any] = Client(
        transport,
        mode=mode,  # type: ignore[arg-type]
        timeout=30,
        message_handler=recorder,
        log_handler=recorder.log,
        elicitation_handler=recorder.elicit,
        sampling_handler=recorder.sample,
        roots=["file:///work/project"],
    )
    async with client:
        yield Session(client, recorder, front, mode)


@contextmanager
def handshake_api() -> Iterator[None]:
    """Handshake-era methods (setLevel, subscribe) warn that the modern era dropped them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        yield


def text(result: mcp_types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def test_eras_are_the_ones_asked_for(session: Session) -> None:
    assert session.handshake == (session.mode == "legacy"), session.era


@pytest.mark.parametrize("server", BACKENDS)
async def test_progress_reaches_the_caller_under_its_token(session: Session, server: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await session.client.call_tool_mcp(
        f"{server}_steps", {"count": 3}, progress_handler=on_progress
    )
    assert not result.is_error, result
    await eventually(lambda: len(seen) == 3, "three progress notifications")
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


@pytest.mark.parametrize("server", BACKENDS)
async def test_backend_logs_reach_the_caller(session: Session, server: str) -> None:
    recorder = session.recorder
    recorder.logs.clear()
    result = await session.client.call_tool_mcp(f"{server}_steps", {"count": 1})
    assert not result.is_error, result
    got = await eventually(lambda: [d["msg"] for _, d in recorder.logs], "log messages")
    await eventually(lambda: len(recorder.logs) >= 3, "all three log messages")
    assert got == ["debug line", "info line", "warning line"]
    assert [level for level, _ in recorder.logs] == ["debug", "info", "warning"]


async def test_log_level_filters_what_is_relayed(session: Session) -> None:
    """Handshake era: `logging/setLevel` for the connection; modern era: the level the
    request opts in to in its `_meta`."""
    client, recorder = session.client, session.recorder
    meta: dict[str, Any] | None = None
    if session.handshake:
        with handshake_api():
            await client.set_logging_level("warning")
    else:
        meta = {mcp_types.LOG_LEVEL_META_KEY: "warning"}
    try:
        recorder.logs.clear()
        for server in BACKENDS:
            result = await client.call_tool_mcp(f"{server}_steps", {"count": 1}, meta=meta)
            assert not result.is_error, result
        await eventually(lambda: len(recorder.logs) >= 2, "warning lines from both backends")
        assert [d["msg"] for _, d in recorder.logs] == ["warning line", "warning line"]
    finally:
        if session.handshake:
            with handshake_api():
                await client.set_logging_level("debug")


@pytest.mark.parametrize("server", BACKENDS)
async def test_server_requests_reach_the_caller(session: Session, server: str) -> None:
    client, recorder = session.client, session.recorder
    ask = await client.call_tool_mcp(f"{server}_ask", {"question": "the answer?"})
    sample = await client.call_tool_mcp(f"{server}_sample", {"prompt": "hello"})
    roots = await client.call_tool_mcp(f"{server}_roots", {})
    # A modern-era client too: the gateway bridges the backend's requests into
    # input-required rounds (core/bridge.py).
    assert text(ask) == "accept: forty-two"
    assert text(sample) == "sampled: hello"
    assert "elicit the answer?" in recorder.requests
    if session.front == "http":
        # A backend session the HTTP front's clients share is told no client's roots,
        # whatever the caller's era (docs/sessions.md).
        assert not roots.is_error
        assert roots.structured_content == {"result": []}
    else:
        assert "file:///work/project" in text(roots)


async def test_a_call_sending_progress_is_streamed_primed_and_resumable(setup: Setup) -> None:
    """Over HTTP, a call whose backend sends something before its result is answered as
    an SSE stream: the priming event first, then the progress, then the result; and a
    client that lost the stream after the priming event is sent all of it again with
    Last-Event-ID."""
    call = {"jsonrpc": "2.0", "id": 9, "method": "tools/call"}
    call["params"] = {"name": "ps_steps", "arguments": {"count": 2}, "_meta": {"progressToken": 5}}
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await open_session(http, setup.http_url, "streamed")
        response = await http.post(setup.http_url, json=call, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        priming, *rest = sse_events(response.text)
        assert priming.get("id"), response.text
        assert priming.get("data", "") == "", response.text
        sent = [json.loads(event["data"]) for event in rest]
        progress = [m["params"]["progress"] for m in sent if "progress" in m.get("params", {})]
        assert progress == [1, 2]
        assert sent[-1]["id"] == 9
        assert sent[-1]["result"]["content"][0]["text"] == "2 steps"
        assert all(event.get("id") for event in rest), "every event can be resumed from"

        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": priming["id"]}
        replayed: list[dict[str, Any]] = []
        async with http.stream("GET", setup.http_url, headers=resume) as stream:
            assert stream.status_code == 200
            with anyio.fail_after(10):
                async for line in stream.aiter_lines():
                    if line.startswith("data:") and line[5:].strip():
                        replayed.append(json.loads(line[5:]))
                        if replayed[-1].get("id") == 9:
                            break
    assert replayed == sent


@pytest.mark.parametrize("server", BACKENDS)
async def test_cancelling_a_call_cancels_the_backend_request(
    session: Session, setup: Setup, server: str
) -> None:
    before = setup.events_seen().count("cancelled wait")
    with pytest.raises((MCPError, TimeoutError)):  # the client gives up and cancels
        await session.client.call_tool_mcp(f"{server}_wait", {"seconds": 60}, timeout=1.0)
    await eventually(
        lambda: setup.events_seen().count("cancelled wait") > before,
        "the backend to see the cancellation",
    )


async def test_completion_is_routed_to_the_owning_backend(session: Session) -> None:
    prompt = await session.client.session.complete(
        mcp_types.PromptReference(type="ref/prompt", name="ps_greet"),
        {"name": "name", "value": "al"},
    )
    assert prompt.completion.values == ["alice", "albert"]
    template = await session.client.session.complete(
        # ph's template is prefixed: ps lists the same one first.
        mcp_types.ResourceTemplateReference(type="ref/resource", uri="files://ph/{name}"),
        {"name": "name", "value": "re"},
    )
    assert template.completion.values == ["readme.md", "report.txt"]


async def test_prompts_and_resources(session: Session) -> None:
    client = session.client
    prompts = {p.name: p for p in await client.list_prompts()}
    assert {"ps_greet", "ph_greet"} <= set(prompts)
    assert [a.name for a in prompts["ps_greet"].arguments or []] == ["name"]
    got = await client.get_prompt("ph_greet", {"name": "Ada"})
    message = got.messages[0].content
    assert isinstance(message, mcp_types.TextContent)
    assert message.text == "Say hello to Ada"
    templates = {t.uri_template for t in await client.list_resource_templates()}
    # Both list `files://{name}`: the first (ps) keeps it, the second's (ph) is prefixed.
    assert {"files://{name}", "files://ph/{name}"} <= templates
    for uri in ("files://notes.md", "files://ph/notes.md"):
        read = await client.read_resource(uri)
        assert isinstance(read[0], mcp_types.TextResourceContents)
        assert read[0].text == "contents of notes.md"
        assert str(read[0].uri) == uri


@pytest.mark.parametrize("server", BACKENDS)
async def test_resource_updates_reach_subscribers(
    session: Session, setup: Setup, server: str
) -> None:
    client, recorder = session.client, session.recorder
    # Both list `counter://value`: ps keeps it, ph's is prefixed, in its updates too.
    uri = "counter://value" if server == "ps" else f"counter://{server}/value"
    if session.handshake:
        with handshake_api():
            await client.session.subscribe_resource(uri)
        await eventually(
            lambda: "subscribed counter://value" in setup.events_seen(), "backend subscription"
        )
        before = len(recorder.of_type(mcp_types.ResourceUpdatedNotification))
        await client.call_tool_mcp(f"{server}_bump", {})
        updates = await eventually(
            lambda: recorder.of_type(mcp_types.ResourceUpdatedNotification)[before:],
            "a resources/updated notification",
        )
        assert str(updates[0].params.uri) == uri
        unsubscribed = setup.events_seen().count("unsubscribed counter://value")
        with handshake_api():
            await client.session.unsubscribe_resource(uri)
        await eventually(
            lambda: setup.events_seen().count("unsubscribed counter://value") > unsubscribed,
            "the backend to be unsubscribed",
        )
    else:
        async with listen(client.session, resource_subscriptions=[uri]) as stream:
            await client.call_tool_mcp(f"{server}_bump", {})
            with anyio.fail_after(15):
                event = await anext(aiter(stream))
        assert event == ResourceUpdated(uri=uri)


async def test_a_tool_added_at_runtime_is_announced(session: Session) -> None:
    client, recorder = session.client, session.recorder
    name = f"added{next(_names)}{session.front}{session.mode}"
    exposed = f"ps_{name}"
    if session.handshake:
        before = len(recorder.of_type(mcp_types.ToolListChangedNotification))
        assert not (await client.call_tool_mcp("ps_grow", {"name": name})).is_error
        await eventually(
            lambda: len(recorder.of_type(mcp_types.ToolListChangedNotification)) > before,
            "tools/list_changed",
        )
    else:
        async with listen(client.session, tools_list_changed=True) as stream:
            assert not (await client.call_tool_mcp("ps_grow", {"name": name})).is_error
            with anyio.fail_after(15):
                event = await anext(aiter(stream))
        assert event == ToolsListChanged()
    assert exposed in {t.name for t in await client.list_tools()}
    result = await client.call_tool_mcp(exposed, {})
    assert text(result) == f"I am {name}"


async def test_a_roots_change_reaches_the_backends(setup: Setup) -> None:
    """Roots are a handshake-era feature: one such client, not the era matrix."""
    before = setup.events_seen().count("roots changed")
    client: Client[Any] = Client(
        StreamableHttpTransport(setup.http_url), mode="legacy", roots=["file:///a"]
    )
    async with client:
        with handshake_api():
            await client.session.send_roots_list_changed()
        # Both backends are told: the stdio one and the HTTP one.
        await eventually(
            lambda: setup.events_seen().count("roots changed") >= before + 2,
            "both backends to hear of the roots change",
        )


async def test_ping_is_answered_by_the_gateway(session: Session) -> None:
    if session.handshake:
        assert await session.client.ping()
    else:
        with pytest.raises(MCPError):  # the modern era has no ping
            await session.client.session.send_ping()
