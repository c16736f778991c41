"""The one description of a replica's live state and of the catalog's size.

`mcp-agg status --json`, the `gateway_health` tool and the metrics all read them from
here, so every view of the gateway names the same things the same way.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from mcp_agg.backend.replica import ReplicaState

if TYPE_CHECKING:
    from mcp_agg.backend.upstream import Upstream
    from mcp_agg.core.catalog import Catalog
    from mcp_agg.security.pinning import Pinner

__all__ = ["catalog_counts", "health_of", "replica_status", "tool_rows"]


def replica_status(upstream: Upstream) -> dict[str, Any]:
    """One replica's live state, as `status --json` prints it."""
    stats = upstream.stats
    health = health_of(upstream)
    return {
        "id": upstream.id,
        "server": upstream.group,
        "transport": upstream.spec.server.kind,
        "state": str(upstream.state),
        "protocol_version": stats.protocol_version,
        "backend": stats.server_name,
        "breaker": str(upstream.breaker.state),
        "breaker_opened": upstream.breaker.opened,
        "health": health,
        "healthy": health == "ok",
        "drained": upstream.drained,
        "last_health_check": _iso(upstream.health.last_probe_at),
        "last_health_check_ok": upstream.health.last_probe_ok,
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
        "exit_code": stats.exit_code,
        "session": upstream.spec.server.session,
        # Per-client backend sessions open now (`session = "per_client"`).
        "sessions": len(upstream.clients),
    }


def health_of(upstream: Upstream) -> str:
    """`ok`: connected and passing its health checks; `ejected`: connected, but taken out
    of rotation by them; `down`: not connected, whatever its last check said."""
    if upstream.state is not ReplicaState.CONNECTED:
        return "down"
    return "ok" if upstream.health.healthy else "ejected"


def catalog_counts(catalog: Catalog) -> dict[str, int]:
    """What the catalog exposes: tools (the gateway's own included), resources,
    resource templates and prompts."""
    return {
        "tools": len(catalog.tools) + len(catalog.local),
        # A resource is kept under its listed URI and its normalized one: count it once.
        "resources": len({id(r) for r in catalog.resources.values()}),
        "templates": len(catalog.templates),
        "prompts": len(catalog.prompts),
    }


def tool_rows(catalog: Catalog, pinner: Pinner) -> list[dict[str, Any]]:
    """Every tool listed, withheld ones too, with its definition and pin status, as
    `mcp-agg tools --json` prints it and the web console shows it."""
    from mcp_agg.components.forwarding import ForwardingTool  # components import this module

    pinning = pinner.mode != "off" and pinner.lock is not None
    listed: dict[str, Any] = {
        **catalog.tools,
        **pinner.withheld,
        **catalog.local,
    }
    rows = []
    for name, tool in listed.items():
        # The gateway's own tools (fan-outs...) have no backend original and no pin.
        original = tool.original if isinstance(tool, ForwardingTool) else None
        definition = tool.to_mcp_tool()
        rows.append(
            {
                "name": name,
                "server": tool.server,
                "original_name": original,
                "description": tool.description or "",
                "annotations": definition.annotations.model_dump(by_alias=True, exclude_none=True)
                if definition.annotations
                else None,
                "input_schema": definition.input_schema,
                # Against the lock file: ok, changed or new (None: no lock, pin = "off").
                "pin": pinner.report.status(name) if pinning and original else None,
                "pin_changes": list(pinner.report.changed.get(name, ())),
                "withheld": name in pinner.withheld,
            }
        )
    return sorted(rows, key=lambda row: str(row["name"]))


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC).isoformat(timespec="seconds")
