"""`GET /metrics`: the gateway's registry for Prometheus to scrape.

Open without `[gateway.auth]` (the HTTP front's Host/Origin guard still applies);
with it, the request must carry a bearer token that the gateway's auth accepts
(any client's: scraping reveals tool names and load, not data), else 401 with a
`WWW-Authenticate: Bearer` challenge as `/mcp` answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastmcp.server.auth import AuthProvider
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_agg.security.auth import bearer_token, build_verifier

if TYPE_CHECKING:
    from mcp_agg.core.views import MetricsSource

__all__ = ["metrics_routes"]


def metrics_routes(gateway: MetricsSource) -> list[BaseRoute]:
    """`/metrics`, when the gateway keeps metrics (`[gateway] metrics`)."""
    metrics = gateway.collect_metrics()
    if metrics is None:
        return []
    auth = gateway.config.gateway.auth
    verifier = None if auth is None else build_verifier(auth)

    async def scrape(request: Request) -> Response:
        if verifier is not None:
            refusal = await _unauthorized(verifier, request)
            if refusal is not None:
                return refusal
        body, content_type = metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    return [Route("/metrics", scrape, methods=["GET"], name="metrics")]


async def _unauthorized(verifier: AuthProvider, request: Request) -> Response | None:
    """The 401 for a request without a token the verifier accepts; None when it has one."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        challenge = 'Bearer realm="mcp-agg"'
    elif await verifier.verify_token(token) is None:
        challenge = 'Bearer realm="mcp-agg", error="invalid_token"'
    else:
        return None
    return PlainTextResponse(
        "401 Unauthorized: /metrics needs a bearer token ([gateway.auth])\n",
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )
