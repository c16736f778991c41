"""Tests for mcp_agg.observability.tracing: the spans of a real in-process gateway.

The gateway runs in-process with its backends: each replica's transport is FastMCP's
in-memory transport to a FastMCP server of the test (no processes), and the client is
an in-memory FastMCP client, so every call takes the gateway's whole path. Spans go to
the SDK's in-memory exporter, through the gateway's own provider set-up (batch
processor, sampler), and are read once the gateway has stopped: which also shows that
stopping flushes them.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastmcp import Client, FastMCP
from fastmcp.client.transports import FastMCPTransport
from fastmcp.exceptions import ToolError
from fastmcp.server.dependencies import get_context
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from opentelemetry import trace as otel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mcp_agg.backend import opener
from mcp_agg.config import TracingConfig, load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.errors import ConfigError
from mcp_agg.front.server import build_server
from mcp_agg.observability import tracing

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"

CONFIG = """
[gateway]
request_timeout = 20
{keys}
{tracing}

[gateway.retry]
base_delay = 0
attempt_timeout = 1

[[servers]]
name = "units"
command = "in-memory"
replicas = 2
idempotent_tools = ["*"]
"""

TRACED = '[gateway.tracing]\nexporter = "console"\nservice_name = "gw-under-test"'


@dataclass
class Backends:
    """What the in-memory backend replicas saw: the `_meta` of every call, and whether
    an OpenTelemetry span was current while their tool ran."""

    metas: list[dict[str, Any]] = field(default_factory=list)
    current_valid: list[bool] = field(default_factory=list)
    calls: int = 0

    def server(self, replica: str) -> FastMCP[Any]:
        mcp: FastMCP[Any] = FastMCP(replica)

        def seen() -> None:
            context = get_context().request_context
            meta = context.meta if context is not None else None
            self.metas.append(dict(meta) if meta else {})
            self.current_valid.append(otel.get_current_span().get_span_context().is_valid)

        @mcp.tool
        def echo(text: str) -> str:
            seen()
            return f"{replica}: {text}"

        @mcp.tool
        async def flaky() -> str:
            """The first call of all hangs (past attempt_timeout); the next ones answer."""
            seen()
            self.calls += 1
            if self.calls == 1:
                await anyio.sleep(30)
            return replica

        @mcp.tool
        def broken() -> str:
            seen()
            raise ToolError("it broke")

        @mcp.resource("units://table")
        def table() -> str:
            return "m, km"

        @mcp.prompt
        def convert() -> str:
            return "Convert it."

        return mcp


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> Backends:
    seen = Backends()
    servers: dict[str, FastMCP[Any]] = {}

    def in_memory(
        spec: Any, stderr: Any = None, on_request: Any = None, on_exit: Any = None
    ) -> FastMCPTransport:
        server = servers.setdefault(spec.id, seen.server(spec.id))
        return FastMCPTransport(server)

    monkeypatch.setattr(opener, "make_transport", in_memory)
    return seen


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """Where the gateway's spans go: `start` keeps its set-up but gets this exporter."""
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "_exporter", lambda config: exporter)
    return exporter


def gateway(tmp_path: Path, *, traced: bool = True, keys: str = "") -> Gateway:
    path = tmp_path / "servers.toml"
    path.write_text(CONFIG.format(tracing=TRACED if traced else "", keys=keys))
    return Gateway(load_config(path))


@asynccontextmanager
async def client_of(gw: Gateway, *middleware: Middleware) -> AsyncIterator[Client[Any]]:
    server = build_server(gw)
    for mw in middleware:
        server.add_middleware(mw)
    async with Client(server) as client:
        yield client


def spans(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


def children(of: ReadableSpan, among: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    assert of.context is not None
    return [s for s in among if s.parent is not None and s.parent.span_id == of.context.span_id]


def hexid(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def traceparent(span: ReadableSpan) -> str:
    """The W3C `traceparent` that names `span` as the parent."""
    assert span.context is not None
    trace_id, span_id = hexid(span)
    return f"00-{trace_id}-{span_id}-{span.context.trace_flags:02x}"


# ---------------------------------------------------------------------------- spans


async def test_a_call_makes_a_client_span_and_an_attempt_span(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    gw = gateway(tmp_path)
    async with client_of(gw) as client:
        result = await client.call_tool_mcp("units_echo", {"text": "hi"})
        assert gw.tracer is not None
    assert not result.is_error
    assert gw.tracer is None  # stopped: the provider is shut down, its spans exported

    (call,) = spans(exported, SpanKind.SERVER)
    (attempt,) = spans(exported, SpanKind.CLIENT)
    assert call.name == "tools/call units_echo"
    assert call.parent is None  # nobody sent a trace context: it starts here
    assert call.resource.attributes["service.name"] == "gw-under-test"
    assert call.attributes is not None
    assert dict(call.attributes) == {
        "mcp.method.name": "tools/call",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "units_echo",
        "mcp_agg.server": "units",
        "mcp_agg.outcome": "ok",
        "mcp_agg.attempts": 1,
        "mcp_agg.replica": attempt.name.removeprefix("attempt "),
    }
    assert call.status.status_code is StatusCode.UNSET
    assert children(call, [attempt]) == [attempt]
    assert attempt.name in ("attempt units-1", "attempt units-2")
    assert attempt.attributes is not None
    assert attempt.attributes["mcp_agg.attempt"] == 1
    assert attempt.attributes["mcp_agg.server"] == "units"
    assert "mcp_agg.failure" not in attempt.attributes

    # The backend got the attempt's context in `_meta`, and it was current while the
    # request was sent (so the SDK and HTTP headers carry the same).
    assert backends.metas[-1]["traceparent"] == traceparent(attempt)
    assert "mcp-agg/idempotency-key" in backends.metas[-1]


async def test_a_retried_call_shows_two_attempt_spans_under_one_call_span(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    async with client_of(gateway(tmp_path)) as client:
        result = await client.call_tool_mcp("units_flaky", {})
    assert not result.is_error

    (call,) = spans(exported, SpanKind.SERVER)
    attempts = sorted(
        children(call, spans(exported, SpanKind.CLIENT)),
        key=lambda s: s.attributes["mcp_agg.attempt"] if s.attributes else 0,
    )
    assert [s.attributes["mcp_agg.attempt"] for s in attempts if s.attributes] == [1, 2]
    first, second = attempts
    assert first.name != second.name  # the retry went to the other replica
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["mcp_agg.failure"] == "broken"  # timed out after sending
    assert first.attributes["error.type"] == "UpstreamTimeout"
    assert first.status.status_code is StatusCode.ERROR
    assert "mcp_agg.failure" not in second.attributes
    assert call.attributes is not None
    assert call.attributes["mcp_agg.attempts"] == 2
    assert call.attributes["mcp_agg.outcome"] == "ok"
    assert f"attempt {call.attributes['mcp_agg.replica']}" == second.name
    # Each attempt sent its own span's context, under the same idempotency key.
    sent = [m["traceparent"] for m in backends.metas]
    assert sent == [traceparent(s) for s in attempts]
    assert len({m["mcp-agg/idempotency-key"] for m in backends.metas}) == 1


async def test_a_fanout_over_a_groups_replicas_has_an_attempt_span_per_replica(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    # The fan-out is the last table of the file, after every [gateway...] one.
    path = tmp_path / "servers.toml"
    path.write_text(
        CONFIG.format(tracing=TRACED, keys="")
        + '[[fanout]]\nname = "both"\ngroup = "units"\ntool = "echo"\n'
    )
    async with client_of(Gateway(load_config(path))) as client:
        result = await client.call_tool_mcp("both", {"text": "hi"})
    assert not result.is_error

    (call,) = spans(exported, SpanKind.SERVER)
    attempts = children(call, spans(exported, SpanKind.CLIENT))
    # Each replica is called on itself (`ReplicaGroup.call_tool_on`): one span each.
    assert sorted(s.name for s in attempts) == ["attempt units-1", "attempt units-2"]
    sent = sorted(m["traceparent"] for m in backends.metas)
    assert sent == sorted(traceparent(s) for s in attempts)


async def test_a_tool_error_is_the_outcome_tool_error(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    async with client_of(gateway(tmp_path)) as client:
        result = await client.call_tool_mcp("units_broken", {})
    assert result.is_error

    (call,) = spans(exported, SpanKind.SERVER)
    (attempt,) = spans(exported, SpanKind.CLIENT)
    assert call.attributes is not None
    assert call.attributes["mcp_agg.outcome"] == "tool_error"
    assert call.attributes["error.type"] == "tool_error"
    assert call.status.status_code is StatusCode.ERROR
    # The backend answered: the attempt worked, as the breaker sees it.
    assert attempt.status.status_code is StatusCode.UNSET


async def test_the_gateways_own_refusal_is_the_outcome_refused(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    async with client_of(gateway(tmp_path, keys="max_argument_bytes = 16")) as client:
        result = await client.call_tool_mcp("units_echo", {"text": "far too long for it"})
    assert result.is_error

    (call,) = spans(exported, SpanKind.SERVER)
    assert call.attributes is not None
    assert call.attributes["mcp_agg.outcome"] == "refused"
    assert call.attributes["mcp_agg.attempts"] == 0
    assert call.status.status_code is StatusCode.ERROR
    assert "max_argument_bytes" in (call.status.description or "")
    assert spans(exported, SpanKind.CLIENT) == []  # no backend saw it


async def test_an_incoming_meta_traceparent_becomes_the_parent(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    async with client_of(gateway(tmp_path)) as client:
        await client.call_tool_mcp("units_echo", {"text": "hi"}, meta={"traceparent": TRACEPARENT})

    (call,) = spans(exported, SpanKind.SERVER)
    (attempt,) = spans(exported, SpanKind.CLIENT)
    assert call.parent is not None
    assert call.parent.is_remote
    assert f"{call.parent.span_id:016x}" == CLIENT_SPAN
    assert hexid(call)[0] == hexid(attempt)[0] == TRACE_ID
    assert backends.metas[-1]["traceparent"].startswith(f"00-{TRACE_ID}-")


async def test_a_callers_unsampled_trace_is_not_recorded_but_still_propagated(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    unsampled = f"00-{TRACE_ID}-{CLIENT_SPAN}-00"
    async with client_of(gateway(tmp_path)) as client:
        await client.call_tool_mcp("units_echo", {"text": "hi"}, meta={"traceparent": unsampled})

    assert exported.get_finished_spans() == ()
    sent = backends.metas[-1]["traceparent"]
    assert sent.startswith(f"00-{TRACE_ID}-")
    assert sent.endswith("-00")


async def test_fastmcps_call_path_makes_one_client_span_too(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    """With middleware that takes part in calls, a call takes FastMCP's path (which
    opens FastMCP's own spans, through the process-wide provider): still one span."""
    seen: list[str] = []

    class Watching(Middleware):
        async def on_call_tool(
            self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]
        ) -> Any:
            seen.append(context.method or "")
            return await call_next(context)

    async with client_of(gateway(tmp_path), Watching()) as client:
        await client.call_tool_mcp("units_echo", {"text": "hi"}, meta={"traceparent": TRACEPARENT})

    assert seen == ["tools/call"]  # it did take FastMCP's path
    (call,) = spans(exported, SpanKind.SERVER)
    assert call.name == "tools/call units_echo"
    assert call.parent is not None
    assert f"{call.parent.span_id:016x}" == CLIENT_SPAN
    assert len(spans(exported, SpanKind.CLIENT)) == 1
    # The gateway's provider is its own: nothing was installed process-wide.
    assert not isinstance(otel.get_tracer_provider(), TracerProvider)


async def test_a_resource_read_and_a_prompt_get_have_spans_with_their_attempts(
    tmp_path: Path, backends: Backends, exported: InMemorySpanExporter
) -> None:
    async with client_of(gateway(tmp_path)) as client:
        await client.read_resource_mcp("units://table")
        await client.get_prompt_mcp("units_convert", meta={"traceparent": TRACEPARENT})

    read, prompt = sorted(spans(exported, SpanKind.SERVER), key=lambda s: s.start_time or 0)
    attempts = spans(exported, SpanKind.CLIENT)
    assert read.name == "resources/read"
    assert read.attributes is not None
    assert read.attributes["mcp.resource.uri"] == "units://table"
    assert read.attributes["mcp_agg.outcome"] == "ok"
    assert read.attributes["mcp_agg.attempts"] == 1
    assert len(children(read, attempts)) == 1
    assert prompt.name == "prompts/get units_convert"
    assert prompt.attributes is not None
    assert prompt.attributes["gen_ai.prompt.name"] == "units_convert"
    assert prompt.attributes["mcp_agg.outcome"] == "ok"
    assert hexid(prompt)[0] == TRACE_ID
    assert len(children(prompt, attempts)) == 1


async def test_tracing_off_makes_no_spans_and_no_context(
    tmp_path: Path,
    backends: Backends,
    exported: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tracing was started")

    monkeypatch.setattr(tracing, "start", never)
    gw = gateway(tmp_path, traced=False)
    async with client_of(gw) as client:
        await client.call_tool_mcp("units_echo", {"text": "hi"})
        assert gw.tracer is None
        assert all(group.tracer is None for group in gw.groups.values())
        assert all(u.on_http_request is None for u in gw.upstreams)
    assert exported.get_finished_spans() == ()
    # No trace context reached the backend, in `_meta` or as the current span.
    assert "traceparent" not in backends.metas[-1]
    assert backends.current_valid == [False]


# ---------------------------------------------------------------------------- pieces


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def test_inject_headers_sends_the_current_span_as_traceparent(
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tracer = provider[0].get_tracer("test")
    outside = httpx2.Request("POST", "http://backend/mcp")
    await tracing.inject_headers(outside)
    assert "traceparent" not in outside.headers
    with tracer.start_as_current_span("attempt") as span:
        inside = httpx2.Request("POST", "http://backend/mcp")
        await tracing.inject_headers(inside)
    context = span.get_span_context()
    assert inside.headers["traceparent"].startswith(
        f"00-{context.trace_id:032x}-{context.span_id:016x}-"
    )


def test_an_endpoint_without_a_path_gets_the_traces_path() -> None:
    assert tracing._traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing._traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert tracing._traces_url("https://x.example/otlp/v1/traces") == (
        "https://x.example/otlp/v1/traces"
    )
    assert tracing._traces_url(None) is None


def test_the_otlp_exporter_posts_to_the_endpoint() -> None:
    exporter = tracing._exporter(TracingConfig(endpoint="http://127.0.0.1:4318"))
    assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"  # type: ignore[attr-defined]
    exporter.shutdown()


def test_without_the_otel_extra_tracing_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # None in sys.modules makes an import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(ConfigError) as caught:
        tracing.start(TracingConfig(exporter="console"), source=tmp_path / "servers.toml")
    assert caught.value.problem == "tracing needs the otel extra: pip install 'mcp-agg[otel]'"
    assert caught.value.loc == "gateway.tracing"


async def test_a_gateway_without_the_otel_extra_does_not_start(
    tmp_path: Path, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    gw = gateway(tmp_path)
    with pytest.raises(ConfigError, match="otel extra"):
        async with gw.running():
            pass
    assert all(u.stats.connects == 0 for u in gw.upstreams)  # no backend was started
