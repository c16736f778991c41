"""The gateway's own tools (`[gateway] expose_gateway_tools = true`).

- `gateway_health`: every replica's live state (`status.replica_status`, what
  `mcp-agg status --json` prints) and the catalog's size;
- `gateway_metrics`: calls by tool and outcome, errors, retries and mean latency by
  server, read from the gateway's metrics registry (listed only while metrics are on).

Both are read-only, take no arguments, and answer JSON as `structuredContent` and the
same JSON as text (for clients that read only text), redacted of configured secrets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import mcp_types
from pydantic import PrivateAttr

from mcp_agg.components.forwarding import hop_wire
from mcp_agg.components.local import LocalTool
from mcp_agg.observability.status import catalog_counts, replica_status
from mcp_agg.security.redact import redact

if TYPE_CHECKING:
    from mcp_agg.core.catalog import Catalog, LocalTools
    from mcp_agg.core.views import StateView
    from mcp_agg.observability.metrics import GatewayMetrics

__all__ = ["gateway_tools", "health_report", "metrics_report"]

_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}
_READ_ONLY = mcp_types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class GatewayTool(LocalTool):
    """A read-only report on the gateway itself."""

    _gateway: StateView = PrivateAttr()
    _report: Callable[[StateView], dict[str, Any]] = PrivateAttr()

    @classmethod
    def make(
        cls,
        name: str,
        title: str,
        description: str,
        gateway: StateView,
        report: Callable[[StateView], dict[str, Any]],
    ) -> GatewayTool:
        tool = cls(
            name=name,
            title=title,
            description=description,
            parameters=_NO_ARGUMENTS,
            annotations=_READ_ONLY.model_copy(update={"title": title}),
        )
        tool._gateway = gateway
        tool._report = report
        return tool

    async def relay(self, arguments: dict[str, Any]) -> dict[str, Any]:
        data = _redacted(self._report(self._gateway))
        text = json.dumps(data, indent=2)
        return hop_wire({"content": [{"type": "text", "text": text}], "structuredContent": data})


def gateway_tools(gateway: StateView) -> LocalTools:
    """The source of the gateway's own tools, for `Gateway.local_tools`."""
    health = GatewayTool.make(
        "gateway_health",
        "Gateway health",
        "Every backend replica behind this gateway: state, circuit breaker, health "
        "checks, calls in flight, latency and last error.",
        gateway,
        health_report,
    )
    metrics = GatewayTool.make(
        "gateway_metrics",
        "Gateway metrics",
        "Calls through this gateway since it started: by tool and outcome, and by "
        "server with errors, retries and mean latency.",
        gateway,
        metrics_report,
    )

    def source(catalog: Catalog) -> Mapping[str, LocalTool]:
        # Read at each build: a reload may turn `expose_gateway_tools` on or off.
        if not gateway.config.gateway.expose_gateway_tools:
            return {}
        if gateway.collect_metrics() is None:  # `[gateway] metrics = false`
            return {health.name: health}
        return {health.name: health, metrics.name: metrics}

    return source


def health_report(gateway: StateView) -> dict[str, Any]:
    """What `gateway_health` answers."""
    return {
        "replicas": [replica_status(u) for u in gateway.upstreams],
        "catalog": catalog_counts(gateway.catalog),
    }


def metrics_report(gateway: StateView) -> dict[str, Any]:
    """What `gateway_metrics` answers, read from the gateway's registry."""
    metrics = gateway.collect_metrics()
    assert metrics is not None  # listed only with metrics
    return summarize(metrics)


def summarize(metrics: GatewayMetrics) -> dict[str, Any]:
    """Calls by tool and outcome, and by server: calls, outcomes, retries, latency."""
    tools: dict[str, dict[str, Any]] = {}
    servers: dict[str, dict[str, Any]] = {}
    totals: dict[str, Any] = {"calls": 0, "outcomes": {}, "retries": 0}

    def server(name: str) -> dict[str, Any]:
        return servers.setdefault(
            name, {"calls": 0, "outcomes": {}, "retries": 0, "mean_latency_ms": None}
        )

    def count(into: dict[str, Any], outcome: str, n: int) -> None:
        into["calls"] += n
        into["outcomes"][outcome] = into["outcomes"].get(outcome, 0) + n

    durations: dict[str, list[float]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "mcp_agg_tool_calls_total":
                n, outcome = int(sample.value), labels["outcome"]
                count(totals, outcome, n)
                if outcome == "unknown_tool":
                    continue  # no tool, no server
                tool = tools.setdefault(
                    labels["tool"], {"server": labels["server"], "calls": 0, "outcomes": {}}
                )
                count(tool, outcome, n)
                count(server(labels["server"]), outcome, n)
            elif sample.name in (
                "mcp_agg_tool_call_duration_seconds_sum",
                "mcp_agg_tool_call_duration_seconds_count",
            ):
                pair = durations.setdefault(labels["server"], [0.0, 0.0])
                pair[sample.name.endswith("_count")] = sample.value
            elif sample.name == "mcp_agg_retries_total" and sample.value:
                server(labels["server"])["retries"] = int(sample.value)
                totals["retries"] += int(sample.value)
    for name, (total, calls) in durations.items():
        if calls:
            server(name)["mean_latency_ms"] = round(total / calls * 1000, 3)
    return {"totals": totals, "tools": tools, "servers": servers}


def _redacted(value: Any) -> Any:
    """`value` with every string redacted (`last_error` may quote a configured secret)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
