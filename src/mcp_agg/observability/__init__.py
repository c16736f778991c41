"""The gateway seen from outside: audit lines, Prometheus metrics, tracing, status.

- `audit`: one `CallRecord` per call, written as a JSON line and told to observers;
- `metrics`: `GatewayMetrics`, a registry per gateway, fed by every call's record and
  by a collector that reads the replicas' state when scraped (imported only once
  metrics can be read: a gateway that no one scrapes neither loads nor records them);
- `endpoint`: `metrics_routes`, `GET /metrics` (behind `[gateway.auth]` when set);
- `status`: `replica_status`, the one description of a replica's live state;
- `tracing`: OpenTelemetry spans per call and per attempt (the `otel` extra).
"""
