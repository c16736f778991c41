"""The gateway's operations endpoints (`/metrics`, `/admin/...`, the console at `/ui`),
beside the protocol.

On the HTTP front they are served next to `/mcp` (outside its MCP authentication:
each endpoint has its own rule); `serve --metrics-port` serves them on a port of
their own, which is how the stdio front has them at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from mcp_agg.front.admin import admin_routes
from mcp_agg.observability.endpoint import metrics_routes

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.webflow import WebSignIn
    from mcp_agg.core.views import OpsHost

__all__ = ["ops_routes"]


def ops_routes(gateway: OpsHost, signin: WebSignIn | None = None) -> list[BaseRoute]:
    """Every operations route the gateway's config turns on; `signin`: the HTTP front's
    browser sign-in, which the console starts a backend sign-in with."""
    routes: list[BaseRoute] = []
    routes += metrics_routes(gateway)
    routes += admin_routes(gateway)
    if gateway.config.gateway.admin is not None:
        # The console (its templates: jinja2) only where it is served.
        from mcp_agg.front.ui import ui_routes

        routes += ui_routes(gateway, signin)
    return routes
