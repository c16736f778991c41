"""The gateway's own tools (gateway_health, gateway_metrics) and the one replica status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mcp_types
import pytest
from fastmcp import Client

from mcp_agg.components.gateway_tools import GatewayTool
from mcp_agg.components.local import LocalTool
from mcp_agg.core.catalog import Catalog, with_local_tools
from mcp_agg.core.gateway import Gateway
from mcp_agg.errors import NameCollisionError
from mcp_agg.front.server import build_server
from mcp_agg.observability import audit
from mcp_agg.observability.status import replica_status
from mcp_agg.security import redact
from tests.fakes import OK, make_gateway

SECRET = "sk-metrics-secret-value"


UNITS = [{"name": "units", "command": "python", "replicas": 2, "env": {"API_KEY": SECRET}}]


def local_tools(gateway: Gateway) -> dict[str, LocalTool]:
    return gateway.assemble_catalog(strict=True).local


def structured(wire: dict[str, Any]) -> Any:
    """The structured result, after checking the text block carries the same JSON."""
    (block,) = wire["content"]
    assert json.loads(block["text"]) == wire["structuredContent"]
    assert not wire.get("isError")
    return wire["structuredContent"]


class Add:
    name, server = "units_add", "units"

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return OK


def test_listed_read_only_without_arguments(tmp_path: Path) -> None:
    tools = local_tools(make_gateway(tmp_path, UNITS))
    assert sorted(tools) == ["gateway_health", "gateway_metrics"]
    for tool in tools.values():
        assert tool.server == "gateway"
        definition = tool.to_mcp_tool()
        assert definition.annotations is not None
        assert definition.annotations.read_only_hint is True
        assert definition.annotations.destructive_hint is False
        assert definition.input_schema["properties"] == {}


def test_off_by_default_and_no_metrics_tool_without_metrics(tmp_path: Path) -> None:
    assert local_tools(make_gateway(tmp_path, UNITS, expose_gateway_tools=False)) == {}
    assert sorted(local_tools(make_gateway(tmp_path, UNITS, metrics=False))) == ["gateway_health"]


async def test_health_reports_every_replica_as_status_does(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, UNITS)
    redact.install(redact.secrets_of(gateway.config.model_dump()))
    try:
        gateway.upstreams[1].stats.last_error = f"bad key {SECRET}"
        gateway.upstreams[1].stats.in_flight = 2
        data = structured(await local_tools(gateway)["gateway_health"].relay({}))
    finally:
        redact.install(())
    replicas = data["replicas"]
    assert [r["id"] for r in replicas] == [u.id for u in gateway.upstreams]
    assert replicas[0] == replica_status(gateway.upstreams[0])
    assert replicas[1]["in_flight"] == 2
    assert replicas[1]["last_error"] == "bad key ***"
    assert {"state", "breaker", "healthy", "latency_ms", "in_flight", "last_error"} <= set(
        replicas[0]
    )
    # No backend has listed anything: the catalog holds the two gateway tools.
    assert data["catalog"] == {"tools": 2, "resources": 0, "templates": 0, "prompts": 0}


async def test_metrics_summarizes_calls_errors_and_retries(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, UNITS)
    await gateway.calls.call(Add(), {})
    await gateway.calls.call(Add(), {})
    with audit.record(None, "units_divide", "units", {}, gateway.observe_call) as entry:
        entry.result({"content": [], "isError": True})
    audit.unknown_tool(None, gateway.observe_call, "nope", {})
    gateway.groups["units"].retries = 2
    tool = local_tools(gateway)["gateway_metrics"]
    data = structured(await gateway.calls.call(tool, {}))  # counted too, as the gateway's own
    assert data["tools"]["units_add"] == {"server": "units", "calls": 2, "outcomes": {"ok": 2}}
    assert data["tools"]["units_divide"]["outcomes"] == {"tool_error": 1}
    assert "gateway_metrics" not in data["tools"]  # this call ends after its report
    units = data["servers"]["units"]
    assert units["calls"] == 3
    assert units["outcomes"] == {"ok": 2, "tool_error": 1}
    assert units["retries"] == 2
    assert units["mean_latency_ms"] >= 0
    assert data["totals"] == {
        "calls": 4,
        "outcomes": {"ok": 2, "tool_error": 1, "unknown_tool": 1},
        "retries": 2,
    }
    again = structured(await gateway.calls.call(tool, {}))
    assert again["tools"]["gateway_metrics"]["outcomes"] == {"ok": 1}


def test_a_backend_tool_named_like_a_gateway_tool_is_a_collision(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, UNITS)
    assert all(isinstance(t, GatewayTool) for t in local_tools(gateway).values())
    backend = SimpleNamespace(server="other")
    catalog = Catalog(tools={"gateway_health": backend})  # type: ignore[dict-item]
    with pytest.raises(NameCollisionError, match="gateway_health"):
        with_local_tools(catalog, gateway.local_tools, strict=True)
    kept = with_local_tools(catalog, gateway.local_tools, strict=False)
    assert sorted(kept.local) == ["gateway_metrics"]


async def test_a_client_lists_and_calls_them(tmp_path: Path) -> None:
    """Through the whole server: a backend that fails to start is reported, not hidden."""
    broken = [{"name": "broken", "command": sys.executable, "args": ["-c", "raise SystemExit(3)"]}]
    gateway = make_gateway(tmp_path, broken, connect_timeout=10)
    async with Client(build_server(gateway)) as client:
        names = {t.name for t in await client.list_tools()}
        assert {"gateway_health", "gateway_metrics"} <= names
        health = await client.call_tool_mcp("gateway_health", {})
        assert isinstance(health, mcp_types.CallToolResult)
        assert not health.is_error
        assert health.structured_content is not None
        (replica,) = health.structured_content["replicas"]
        assert replica["id"] == "broken-1"
        assert replica["state"] in {"error", "connecting"}
        assert replica["last_error"]
        metrics = await client.call_tool_mcp("gateway_metrics", {})
        assert metrics.structured_content is not None
        assert metrics.structured_content["tools"]["gateway_health"]["calls"] == 1
