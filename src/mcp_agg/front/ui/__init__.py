"""The web console at `/ui`: the fleet, the catalog and the traffic, and admin actions.

Served with the operations routes (beside `/mcp` on the HTTP front, on `--metrics-port`
for a stdio gateway) when `[gateway.admin]` is configured. See docs/console.md.
"""

from __future__ import annotations

from mcp_agg.front.ui.routes import ui_routes

__all__ = ["ui_routes"]
