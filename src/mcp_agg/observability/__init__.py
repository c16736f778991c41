"""The gateway seen from outside: Prometheus metrics, `/metrics`, and its own tools.

- `metrics`: `GatewayMetrics`, a registry per gateway, fed by every call's record and
  by a collector that reads the replicas' state when scraped;
- `endpoint`: `metrics_routes`, `GET /metrics` (behind `[gateway.auth]` when set);
- `status`: `replica_status`, the one description of a replica's live state;
- `tools`: `gateway_tools`, the `gateway_health` and `gateway_metrics` tools.
"""

from __future__ import annotations

from mcp_agg.observability.endpoint import metrics_routes
from mcp_agg.observability.status import catalog_counts, replica_status
from mcp_agg.observability.tools import gateway_tools

# `metrics` (prometheus-client) is imported by `Gateway.collect_metrics`, once metrics
# can be read: a gateway that no one scrapes neither loads nor records them.
__all__ = ["catalog_counts", "gateway_tools", "metrics_routes", "replica_status"]
