"""Prometheus metrics: per-call counters and histograms, the state collector, /metrics."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from mcp_agg.backend.upstream import ReplicaState, Upstream
from mcp_agg.config import config_from_raw
from mcp_agg.core.catalog import Catalog
from mcp_agg.core.gateway import Gateway
from mcp_agg.errors import BulkheadFull, RateLimited, UpstreamConnectError, UpstreamUnavailable
from mcp_agg.front.listener import ops_listener, serving_ops
from mcp_agg.front.ops import ops_routes
from mcp_agg.front.server import build_server
from mcp_agg.observability import audit
from mcp_agg.observability.endpoint import metrics_routes
from mcp_agg.observability.metrics import BUCKETS, GatewayMetrics
from tests.fakes import OK, TOOL_ERROR

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def make_gateway(tmp_path: Path, **gateway: Any) -> Gateway:
    """A gateway whose metrics can be read (as the HTTP front's /metrics reads them)."""
    raw = {
        "gateway": {"retry": {"base_delay": 0}, **gateway},
        "servers": [
            {"name": "units", "command": "python", "replicas": 2},
            {"name": "notes", "command": "python"},
        ],
    }
    made = Gateway(config_from_raw(raw, tmp_path / "servers.toml", {}))
    made.collect_metrics()
    return made


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return make_gateway(tmp_path)


def scrape(metrics: GatewayMetrics | None) -> Samples:
    """Every sample of the exposition, parsed as Prometheus would."""
    assert metrics is not None
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@dataclass
class FakeTool:
    """A CallTarget whose relay answers `wire`, or notes a failure, or raises."""

    name: str
    server: str
    wire: dict[str, Any]
    failure: Exception | None = None
    raises: Exception | None = None

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        audit.note_attempt(f"{self.server}-1")
        if self.raises is not None:
            raise self.raises
        if self.failure is not None:
            audit.note_failure(self.failure)
        return self.wire


async def test_calls_are_counted_by_tool_server_and_outcome(gateway: Gateway) -> None:
    add = FakeTool("units_add", "units", OK)
    await gateway.calls.call(add, {})
    await gateway.calls.call(add, {})
    await gateway.calls.call(FakeTool("units_divide", "units", TOOL_ERROR), {})
    await gateway.calls.call(
        FakeTool("units_add", "units", TOOL_ERROR, failure=UpstreamUnavailable("no replica")), {}
    )
    await gateway.calls.call(
        FakeTool("units_add", "units", TOOL_ERROR, failure=BulkheadFull("units: full")), {}
    )
    with pytest.raises(RuntimeError):
        await gateway.calls.call(
            FakeTool("notes_read", "notes", OK, raises=RuntimeError("boom")), {}
        )
    with pytest.raises(RateLimited):
        await gateway.calls.call(
            FakeTool("notes_read", "notes", OK, raises=RateLimited("slow", retry_after=1)), {}
        )
    audit.unknown_tool(gateway.audit, gateway.observe_call, "made_up_1", {})
    audit.unknown_tool(gateway.audit, gateway.observe_call, "made_up_2", {})

    samples = scrape(gateway.metrics)
    calls = {
        dict(labels)["tool"] + "/" + dict(labels)["outcome"]: v
        for (name, labels), v in samples.items()
        if name == "mcp_agg_tool_calls_total"
    }
    assert calls == {
        "units_add/ok": 2,
        "units_divide/tool_error": 1,
        "units_add/error": 1,
        "units_add/refused": 1,
        "notes_read/error": 1,
        "notes_read/refused": 1,
        "/unknown_tool": 2,  # one series, whatever names clients make up
    }
    assert value(
        samples, "mcp_agg_tool_calls_total", tool="units_add", server="units", outcome="ok"
    )
    assert (
        value(samples, "mcp_agg_tool_calls_total", tool="", server="", outcome="unknown_tool") == 2
    )
    # Latency of the dispatched calls only: not of refusals or unknown tools.
    count = "mcp_agg_tool_call_duration_seconds_count"
    assert value(samples, count, server="units") == 4
    assert value(samples, count, server="notes") == 1
    assert ("mcp_agg_tool_call_duration_seconds_count", frozenset({("server", "")})) not in samples


def test_latency_lands_in_its_bucket(gateway: Gateway) -> None:
    assert gateway.metrics is not None
    gateway.metrics.observe(audit.CallRecord("units_add", "units", "ok", duration=0.03))
    gateway.metrics.observe(audit.CallRecord("units_add", "units", "ok", duration=45.0))
    samples = scrape(gateway.metrics)
    bucket = "mcp_agg_tool_call_duration_seconds_bucket"
    bounds = sorted(float(dict(labels)["le"]) for (name, labels) in samples if name == bucket)
    assert bounds == [*BUCKETS, float("inf")]
    assert BUCKETS[0] == 0.005
    assert BUCKETS[-1] == 60.0
    assert value(samples, bucket, server="units", le="0.025") == 0
    assert value(samples, bucket, server="units", le="0.05") == 1
    assert value(samples, bucket, server="units", le="30.0") == 1
    assert value(samples, bucket, server="units", le="60.0") == 2
    assert value(samples, "mcp_agg_tool_call_duration_seconds_sum", server="units") == 45.03


async def test_one_record_feeds_the_audit_line_and_the_metrics(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, audit_log="audit.jsonl")
    assert gateway.audit is not None
    try:
        await gateway.calls.call(
            FakeTool("units_add", "units", TOOL_ERROR, failure=UpstreamUnavailable("down")), {}
        )
    finally:
        gateway.audit.close()
    (line,) = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert line["outcome"] == "error"
    assert line["replica"] == "units-1"
    assert line["attempts"] == 1
    samples = scrape(gateway.metrics)
    assert (
        value(
            samples, "mcp_agg_tool_calls_total", tool="units_add", server="units", outcome="error"
        )
        == 1
    )


def test_no_metrics_are_kept_until_they_can_be_read(tmp_path: Path) -> None:
    raw = {"servers": [{"name": "units", "command": "python"}]}
    gateway = Gateway(config_from_raw(raw, tmp_path / "servers.toml", {}))
    assert (gateway.metrics, gateway.observe_call) == (None, None)  # stdio, nothing reads them
    build_server(gateway)
    assert gateway.metrics is None
    build_server(gateway, http=True)  # /metrics beside /mcp
    assert gateway.metrics is not None
    assert gateway.observe_call == gateway.metrics.observe


def test_metrics_off_costs_nothing_per_call(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, metrics=False)
    assert gateway.metrics is None
    assert gateway.observe_call is None
    with audit.record(gateway.audit, "units_add", "units", {}, gateway.observe_call):
        assert audit.current_trace.get() is None  # the no-op context: no trace, no timing
    assert metrics_routes(gateway) == []


async def test_each_gateway_counts_its_own_calls(tmp_path: Path) -> None:
    first, second = make_gateway(tmp_path), make_gateway(tmp_path)
    await first.calls.call(FakeTool("units_add", "units", OK), {})
    ok = {"tool": "units_add", "server": "units", "outcome": "ok"}
    assert value(scrape(first.metrics), "mcp_agg_tool_calls_total", **ok) == 1
    assert ("mcp_agg_tool_calls_total", frozenset(ok.items())) not in scrape(second.metrics)


def test_collector_reads_replica_group_and_catalog_state(gateway: Gateway) -> None:
    units_1, units_2, notes = gateway.upstreams
    units_1.state = ReplicaState.CONNECTED
    units_1._client = object()  # type: ignore[assignment]  # connected, as far as `available` sees
    units_1.stats.in_flight = 3
    units_1.stats.calls, units_1.stats.failures, units_1.stats.connects = 10, 2, 1
    units_1.ewma.observe(0.2)
    for _ in range(units_2.breaker.failure_threshold):
        units_2.breaker.record_failure()
    notes.health.healthy = False
    gateway.groups["units"].retries = 4
    shared = object()
    gateway.catalog = Catalog(
        tools={"a": object(), "b": object()},  # type: ignore[dict-item]
        resources={"notes+file:///x": shared, "notes+file:///x/": shared},  # type: ignore[dict-item]
        templates=(object(),),  # type: ignore[arg-type]
        prompts={"p": object()},  # type: ignore[dict-item]
        local={"gateway_health": object()},  # type: ignore[dict-item]
    )

    samples = scrape(gateway.metrics)
    one = {"server": "units", "replica": "units-1"}
    two = {"server": "units", "replica": "units-2"}
    three = {"server": "notes", "replica": "notes-1"}
    assert [units_1.id, units_2.id, notes.id] == ["units-1", "units-2", "notes-1"]
    assert value(samples, "mcp_agg_replica_up", **one) == 1
    assert value(samples, "mcp_agg_replica_up", **two) == 0  # never connected
    assert value(samples, "mcp_agg_replica_healthy", **one) == 1
    assert value(samples, "mcp_agg_replica_healthy", **three) == 0
    assert value(samples, "mcp_agg_replica_breaker_state", **one, state="closed") == 1
    assert value(samples, "mcp_agg_replica_breaker_state", **one, state="open") == 0
    assert value(samples, "mcp_agg_replica_breaker_state", **two, state="open") == 1
    assert value(samples, "mcp_agg_replica_breaker_state", **two, state="closed") == 0
    assert value(samples, "mcp_agg_replica_breaker_opens_total", **two) == 1
    assert value(samples, "mcp_agg_replica_in_flight_requests", **one) == 3
    assert value(samples, "mcp_agg_replica_in_flight_requests", **two) == 0
    assert value(samples, "mcp_agg_replica_latency_seconds", **one) == pytest.approx(
        units_1.latency
    )
    assert units_1.latency > 0
    assert value(samples, "mcp_agg_replica_requests_total", **one) == 10
    assert value(samples, "mcp_agg_replica_failures_total", **one) == 2
    assert value(samples, "mcp_agg_replica_connects_total", **one) == 1
    assert value(samples, "mcp_agg_retries_total", server="units") == 4
    assert value(samples, "mcp_agg_retries_total", server="notes") == 0
    items = {
        kind: value(samples, "mcp_agg_catalog_items", kind=kind)
        for kind in ("tools", "resources", "templates", "prompts")
    }
    assert items == {"tools": 3, "resources": 1, "templates": 1, "prompts": 1}
    assert value(samples, "mcp_agg_build_info", version=__import__("mcp_agg").__version__) == 1


def test_before_the_catalog_exists_the_state_is_reported(gateway: Gateway) -> None:
    samples = scrape(gateway.metrics)
    assert value(samples, "mcp_agg_catalog_items", kind="tools") == 0
    assert value(samples, "mcp_agg_replica_up", server="notes", replica="notes-1") == 0


async def test_a_group_counts_attempts_beyond_the_first(gateway: Gateway) -> None:
    group = gateway.groups["units"]
    attempts: list[str] = []

    def connected(upstream: Upstream) -> None:
        upstream.state = ReplicaState.CONNECTED
        upstream._client = object()  # type: ignore[assignment]

        async def call_tool(name: str, arguments: dict[str, Any], **_: Any) -> dict[str, Any]:
            attempts.append(upstream.id)
            if len(attempts) == 1:  # the first attempt of all fails before sending
                raise UpstreamConnectError("refused", replica=upstream.id)
            return OK

        upstream.call_tool = call_tool  # type: ignore[method-assign]

    for upstream in group.replicas:
        connected(upstream)
    assert await group.call_tool("add", {}, safe=True) == OK
    assert await group.call_tool("add", {}, safe=True) == OK
    assert len(attempts) == 3
    assert group.retries == 1
    assert value(scrape(gateway.metrics), "mcp_agg_retries_total", server="units") == 1


# ---------------------------------------------------------------- /metrics


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=metrics_routes(gateway))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as client:
        yield client


async def test_metrics_endpoint_serves_the_registry(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    await gateway.calls.call(FakeTool("units_add", "units", OK), {})
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"mcp_agg_tool_calls", "mcp_agg_replica_up", "mcp_agg_catalog_items"} <= families
    openmetrics = await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    assert (await http.post("/metrics")).status_code == 405


async def test_metrics_endpoint_needs_a_token_with_auth(tmp_path: Path) -> None:
    gateway = make_gateway(
        tmp_path,
        auth={
            "type": "bearer",
            "tokens": [{"token": "scrape-token-123", "client_id": "prometheus"}],
        },
    )
    app = Starlette(routes=metrics_routes(gateway))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as http:
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
        basic = await http.get("/metrics", headers={"Authorization": "Basic YTpi"})
        good = await http.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "mcp_agg" not in refused.text
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert "error=" not in missing.headers["www-authenticate"]
    assert good.status_code == 200
    assert "mcp_agg_replica_up" in good.text


# ---------------------------------------------------------------- --metrics-port


async def test_ops_listener_serves_until_its_block_ends(gateway: Gateway) -> None:
    ops = ops_listener(
        ops_routes(gateway), host="127.0.0.1", port=0, settings=gateway.config.gateway
    )
    port = ops.sock.getsockname()[1]
    assert ops.url == f"http://127.0.0.1:{port}"
    async with serving_ops(ops), httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{ops.url}/metrics")
        assert response.status_code == 200
        assert "mcp_agg_replica_up" in response.text
        # The same Host/Origin guard as the HTTP front's.
        evil = await http.get(f"{ops.url}/metrics", headers={"Host": "evil.example.com"})
        assert evil.status_code == 403
    assert ops.sock.fileno() == -1  # closed with the block
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_taken_metrics_port_fails_before_anything_starts(gateway: Gateway) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            ops_listener([], host="127.0.0.1", port=port, settings=gateway.config.gateway)
