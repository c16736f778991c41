"""One description of a replica's live state: `status --json`, `GET /admin/servers`."""

from __future__ import annotations

import datetime
from typing import Any

from mcp_agg.upstream import Upstream

__all__ = ["replica_status"]


def replica_status(upstream: Upstream) -> dict[str, Any]:
    """One replica's live state, as `status --json` prints it."""
    stats, health = upstream.stats, upstream.health
    return {
        "id": upstream.id,
        "server": upstream.group,
        "transport": upstream.spec.server.kind,
        "state": str(upstream.state),
        "protocol_version": stats.protocol_version,
        "backend": stats.server_name,
        "breaker": str(upstream.breaker.state),
        "breaker_opened": upstream.breaker.opened,
        "healthy": health.healthy,
        "last_health_check": _iso(health.last_probe_at),
        "last_health_check_ok": health.last_probe_ok,
        "tools": len(upstream.listing.tools),
        "resources": len(upstream.listing.resources) + len(upstream.listing.templates),
        "prompts": len(upstream.listing.prompts),
        "calls": stats.calls,
        "failures": stats.failures,
        "in_flight": stats.in_flight,
        "latency_ms": round(upstream.latency * 1000, 3),
        "connects": stats.connects,
        "last_error": stats.last_error,
        "last_error_at": _iso(stats.last_error_at),
    }


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC).isoformat(timespec="seconds")
