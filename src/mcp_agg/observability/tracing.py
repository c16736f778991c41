"""OpenTelemetry tracing (`[gateway.tracing]`): a span per client request, one per attempt.

Spans:

- `tools/call {tool}` (SERVER) around each client tool call, on both of the gateway's
  call paths (`CallPipeline.call`): `mcp.method.name`, `gen_ai.tool.name`, `mcp_agg.server`,
  and when it has ended `mcp_agg.outcome` (the audit log's classification: ok,
  tool_error, error, refused), `mcp_agg.attempts`, `mcp_agg.replica`; any outcome but
  ok sets `error.type` to it and the span's status to error.
- `resources/read` and `prompts/get {prompt}` (SERVER), with the same attempt
  attributes and an outcome of ok or error.
- `attempt {replica}` (CLIENT) around each attempt on a backend replica, a child of the
  request's span: `mcp_agg.server`, `mcp_agg.replica`, `mcp_agg.attempt` (counted from 1
  over the whole call, failover included) and, when it failed, `mcp_agg.failure` (`errors.classify`:
  not_sent, broken, protocol, session_expired) and `error.type`.

A request's span continues the caller's W3C trace: from the `traceparent`/`tracestate`
HTTP headers on the HTTP front, else from the request's `_meta` (where MCP clients put
it). Each attempt sends its own context on, in the request's `_meta` for every backend
and as HTTP headers to HTTP and SSE backends (`inject_headers`).

The gateway's provider is its own, never installed as the process-wide one. FastMCP and
the MCP SDK trace through the process-wide provider, a no-op here, so their spans
(FastMCP's per-request SERVER span, the SDK's per-request CLIENT span) never double the
gateway's; they still carry the current context, which is how the SDK's own `_meta`
injection agrees with ours.

Off (no `[gateway.tracing]`) there is no `Tracer`: every hook is a `None` check (and at
most a shared no-op context manager, as the audit log's), and no span or OpenTelemetry
context is ever made. The SDK is the `otel` extra and is imported only when
tracing is configured.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx2
from opentelemetry import propagate
from opentelemetry import trace as otel
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode

from mcp_agg import __version__
from mcp_agg.core.caller import current_caller
from mcp_agg.errors import ConfigError, classify
from mcp_agg.observability.audit import CallRecord, CallTrace, current_trace
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from mcp_agg.components.forwarding import CallTarget
    from mcp_agg.config import TracingConfig

__all__ = [
    "MISSING_EXTRA",
    "Tracer",
    "inject_headers",
    "request_span",
    "require_extra",
    "start",
    "tool_call",
]

logger = logging.getLogger(__name__)

MISSING_EXTRA = "tracing needs the otel extra: pip install 'mcp-agg[otel]'"
#: How long stopping the gateway waits for the last spans to be exported (seconds).
_FLUSH_GRACE = 5.0
#: What OTLP/HTTP serves traces under, below an `endpoint` given as a bare base URL.
_TRACES_PATH = "/v1/traces"

_Ended = Callable[[CallRecord], None]


class Tracer:
    """The gateway's spans, made with its own `TracerProvider`."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("mcp_agg", __version__)

    @contextlib.contextmanager
    def tool_call(self, tool: CallTarget) -> Iterator[_Ended]:
        """The span of one client tool call; call what it yields with the call's
        `CallRecord` (an observer of `audit.record`) before the block ends."""
        with self._tracer.start_as_current_span(
            f"tools/call {tool.name}",
            context=_incoming(),
            kind=SpanKind.SERVER,
            attributes={
                "mcp.method.name": "tools/call",
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool.name,
                "mcp_agg.server": tool.server,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield functools.partial(_ended, span)

    @contextlib.contextmanager
    def request(
        self, method: str, *, uri: object = None, prompt: str | None = None
    ) -> Iterator[None]:
        """The span of a client's resources/read (of `uri`) or prompts/get (of `prompt`):
        its outcome is ok, or error when it raises."""
        attributes = {"mcp.method.name": method}
        if uri is not None:
            attributes["mcp.resource.uri"] = str(uri)
        if prompt is not None:
            attributes["gen_ai.prompt.name"] = prompt
        trace = CallTrace()
        token = current_trace.set(trace)  # the group's dispatch notes its attempts here
        try:
            with self._tracer.start_as_current_span(
                method if prompt is None else f"{method} {prompt}",
                context=_incoming(),
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                outcome, error = "error", None
                try:
                    yield
                except BaseException as exc:
                    error = str(exc) or type(exc).__name__
                    raise
                else:
                    outcome = "ok"
                finally:
                    _ended(
                        span,
                        CallRecord(
                            method, None, outcome, trace.replica, trace.attempts, error=error
                        ),
                    )
        finally:
            current_trace.reset(token)

    @contextlib.contextmanager
    def attempt(self, server: str, replica: str, meta: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The span of one attempt on a backend replica; yields the request's `_meta`
        with the attempt's trace context added."""
        attributes: dict[str, str | int] = {"mcp_agg.server": server, "mcp_agg.replica": replica}
        call = current_trace.get()
        if call is not None:
            attributes["mcp_agg.attempt"] = call.attempts  # counted as the replica was picked
        with self._tracer.start_as_current_span(
            f"attempt {replica}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            carried = dict(meta)
            propagate.inject(carried)
            try:
                yield carried
            except anyio.get_cancelled_exc_class():
                # The call's deadline or the client gave up; not the replica's verdict.
                span.set_attribute("mcp_agg.failure", "cancelled")
                span.set_status(StatusCode.ERROR, "cancelled")
                raise
            except Exception as exc:
                span.set_attributes(
                    {"mcp_agg.failure": classify(exc).value, "error.type": type(exc).__qualname__}
                )
                span.set_status(StatusCode.ERROR, redact(str(exc)))
                raise

    def flush(self) -> None:
        """Export every span ended so far (blocks)."""
        self.provider.force_flush()

    async def shutdown(self) -> None:
        """Export the spans still queued and stop, waiting at most `_FLUSH_GRACE`."""
        with anyio.move_on_after(_FLUSH_GRACE, shield=True):
            # A collector that is down would block the exporter; never the event loop.
            await anyio.to_thread.run_sync(self.provider.shutdown, abandon_on_cancel=True)


def _ended(span: Span, call: CallRecord) -> None:
    """Set what a request's span says of how it ended (its record's classification)."""
    outcome = call.outcome
    span.set_attributes({"mcp_agg.outcome": outcome, "mcp_agg.attempts": call.attempts})
    if call.replica is not None:
        span.set_attribute("mcp_agg.replica", call.replica)
    if outcome != "ok":
        span.set_attribute("error.type", outcome)
        span.set_status(StatusCode.ERROR, redact(call.error) if call.error else None)


def _incoming() -> Context | None:
    """The caller's trace context: its HTTP headers' on the HTTP front, else its request's
    `_meta`'s; None (the current context) when it sent none."""
    caller = current_caller.get()
    if caller is None:
        return None
    request = caller.context
    fields = propagate.get_global_textmap().fields
    # `request.request` is the Starlette request on the HTTP front (either era), else None.
    carrier = _carrier(getattr(request.request, "headers", None), fields)
    if not carrier:
        params = request.params
        carrier = _carrier(params.get("_meta") if isinstance(params, Mapping) else None, fields)
    if not carrier:
        return None
    context = propagate.extract(carrier)
    return context if otel.get_current_span(context).get_span_context().is_valid else None


def _carrier(source: object, fields: set[str]) -> dict[str, str]:
    """The trace context fields of headers or `_meta` (only strings: a client's `_meta`
    may hold anything)."""
    if not isinstance(source, Mapping):
        return {}
    return {key: value for key in fields if isinstance(value := source.get(key), str)}


# ---------------------------------------------------------------------------- the hooks


def tool_call(tracer: Tracer | None, tool: CallTarget) -> contextlib.AbstractContextManager[Any]:
    """`tracer.tool_call(tool)`, or (tracing off) a shared no-op that yields None."""
    return _UNTRACED if tracer is None else tracer.tool_call(tool)


def request_span(
    tracer: Tracer | None, method: str, *, uri: object = None, prompt: str | None = None
) -> contextlib.AbstractContextManager[Any]:
    """`tracer.request(...)`, or (tracing off) a shared no-op."""
    return _UNTRACED if tracer is None else tracer.request(method, uri=uri, prompt=prompt)


_UNTRACED = contextlib.nullcontext()


async def inject_headers(request: httpx2.Request) -> None:
    """An httpx event hook: the current trace context as W3C headers on a backend request.

    The SDK's HTTP transports send each request from a task run in the context of the
    call that sent it, so the current span here is that call's attempt; requests of the
    session itself (its GET stream, a reconnect) carry none.
    """
    propagate.inject(request.headers)


# ---------------------------------------------------------------------------- set-up


def start(config: TracingConfig, *, source: Path | None = None) -> Tracer:
    """A tracer that exports spans as `config` (of the config file `source`) says.

    Raises ConfigError (exit code 2) when the `otel` extra is not installed.
    """
    require_extra(config, source=source)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: config.service_name}),
        # A caller's sampling decision stands; a trace that starts here is kept at the ratio.
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(config)))
    logger.info(
        "tracing: %s exporter, service %r, sample ratio %g",
        config.exporter,
        config.service_name,
        config.sample_ratio,
    )
    return Tracer(provider)


def require_extra(config: TracingConfig, *, source: Path | None = None) -> None:
    """Raise ConfigError unless what `config` needs of the `otel` extra is installed."""
    try:
        import opentelemetry.sdk.trace

        if config.exporter == "otlp":
            import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError as exc:
        raise ConfigError(MISSING_EXTRA, source=source, loc="gateway.tracing") from exc


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # stderr: stdout is the protocol in stdio mode. One JSON line per span.
        return ConsoleSpanExporter(
            out=sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=_traces_url(config.endpoint))


def _traces_url(endpoint: str | None) -> str | None:
    """`endpoint` as the URL spans are posted to: a bare base URL (as in
    `OTEL_EXPORTER_OTLP_ENDPOINT`) gets `/v1/traces`; None leaves it to the environment."""
    if endpoint is None:
        return None
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + _TRACES_PATH
    return endpoint
