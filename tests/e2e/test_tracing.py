"""Tracing end to end: a real `mcp-agg serve` with `[gateway.tracing] exporter = "console"`.

A client's trace context (as HTTP headers, or in the request's `_meta`) is continued
by the gateway's spans and reaches an HTTP backend as its `traceparent` header; the
spans, printed on the gateway's stderr as it stops, show the client call and its
attempt in the caller's trace. Without the `otel` extra, tracing stops the gateway
at startup with a config error.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.procs import BACKENDS, PYTHON, backend_process, free_port, served_gateway

pytestmark = pytest.mark.e2e

HEADERS = BACKENDS / "headers.py"

#: Two callers' traces: one sent as HTTP headers, one in `_meta`.
HEADER_TRACE, HEADER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
META_TRACE, META_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def config(folder: Path, backend_port: int) -> Path:
    path = folder / "servers.toml"
    path.write_text(
        f"""
[gateway]
connect_timeout = 30

[gateway.tracing]
exporter = "console"
service_name = "mcp-agg-e2e"

[[servers]]
name = "headers"
url = "http://127.0.0.1:{backend_port}/mcp"
"""
    )
    return path


def printed_spans(stderr: str) -> list[dict[str, Any]]:
    """The console exporter's spans: one JSON object per line, between the log lines."""
    spans = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            span = json.loads(line)
            if "context" in span:
                spans.append(span)
    return spans


def the(spans: list[dict[str, Any]], name: str, trace_id: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name and s["context"]["trace_id"] == f"0x{trace_id}"]
    assert len(found) == 1, f"{name} in trace {trace_id}: {found or spans}"
    return found[0]


async def test_a_callers_trace_runs_through_the_gateway_to_the_backend(tmp_path: Path) -> None:
    backend_port = free_port()
    stderr_path = tmp_path / "gateway.stderr"
    with (
        backend_process(HEADERS, "--record-file", str(tmp_path / "seen.jsonl"), port=backend_port),
        stderr_path.open("wb") as stderr,
        served_gateway(config(tmp_path, backend_port), stderr=stderr) as (url, gateway),
    ):
        by_header = StreamableHttpTransport(
            url, headers={"traceparent": traceparent(HEADER_TRACE, HEADER_SPAN)}
        )
        async with Client(by_header, mode="legacy") as client:
            first = await client.call_tool_mcp("headers_headers", {})
        async with Client(url, mode="legacy") as client:
            second = await client.call_tool_mcp(
                "headers_headers", {}, meta={"traceparent": traceparent(META_TRACE, META_SPAN)}
            )
        # Stopped gracefully, the gateway exports the spans it still holds.
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=30) == 0
    spans = printed_spans(stderr_path.read_text())

    for result, trace_id, caller_span in (
        (first, HEADER_TRACE, HEADER_SPAN),
        (second, META_TRACE, META_SPAN),
    ):
        assert not result.is_error, result
        assert isinstance(result.structured_content, dict)
        sent = result.structured_content["traceparent"]  # what the backend received
        call = the(spans, "tools/call headers_headers", trace_id)
        attempt = the(spans, "attempt headers-1", trace_id)
        assert call["kind"] == "SpanKind.SERVER"
        assert call["parent_id"] == f"0x{caller_span}"
        assert call["attributes"]["mcp_agg.outcome"] == "ok"
        assert call["attributes"]["mcp_agg.server"] == "headers"
        assert call["resource"]["attributes"]["service.name"] == "mcp-agg-e2e"
        assert attempt["kind"] == "SpanKind.CLIENT"
        assert attempt["parent_id"] == call["context"]["span_id"]
        assert attempt["attributes"]["mcp_agg.replica"] == "headers-1"
        # The backend's request came from the attempt, in the caller's trace.
        version, sent_trace, sent_parent, _flags = sent.split("-")
        assert (version, sent_trace) == ("00", trace_id)
        assert f"0x{sent_parent}" == attempt["context"]["span_id"]


def test_tracing_without_the_otel_extra_is_a_config_error(tmp_path: Path) -> None:
    """The gateway run where `opentelemetry.sdk` cannot be imported (None in sys.modules
    makes an import fail as a missing package does)."""
    path = config(tmp_path, free_port())
    without_sdk = (
        "import sys; sys.modules['opentelemetry.sdk'] = None; "
        "from mcp_agg.cli import main; sys.argv[0] = 'mcp-agg'; main()"
    )
    for command in ("serve", "check"):
        result = subprocess.run(
            [PYTHON, "-c", without_sdk, command, "-c", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, (command, result.stderr)
        assert "tracing needs the otel extra: pip install 'mcp-agg[otel]'" in result.stderr
        assert "gateway.tracing" in result.stderr
        assert "Traceback" not in result.stderr
