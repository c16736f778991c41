"""The HTTP front as an OAuth 2.1 resource server (`[gateway.auth] type = "oauth"`).

Built on FastMCP's `RemoteAuthProvider` and the MCP SDK's protected-resource routes,
with three changes a gateway needs:

- The resource is the configured `resource`, exactly: behind a proxy or TLS terminator
  the gateway cannot derive its public URL from the request, and every token's
  audience must be that URL (RFC 8707), so it is configured once and used for both.
- The metadata (RFC 9728) is served at `/.well-known/oauth-protected-resource` with the
  resource's path appended (what the spec and the `resource_metadata` challenge point
  to) and at the bare form too, which clients that ignore the challenge probe.
- Required scopes are checked after the token, not inside the `JWTVerifier`: a valid
  token that lacks one must get 403 `insufficient_scope` (so the client can step up),
  where the verifier would turn it into 401 `invalid_token`.
"""

from __future__ import annotations

from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.auth.providers.jwt import JWTVerifier
from pydantic import AnyHttpUrl
from starlette.routing import Route

from mcp_agg.config import AuthConfig

__all__ = ["WELL_KNOWN", "ResourceServer"]

#: Where RFC 9728 puts a protected resource's metadata (before the resource's path).
WELL_KNOWN = "/.well-known/oauth-protected-resource"


class ResourceServer(RemoteAuthProvider):
    """Verifies JWT access tokens for the gateway's `resource` and publishes its
    protected-resource metadata."""

    def __init__(self, auth: AuthConfig) -> None:
        assert auth.resource is not None  # AuthConfig checks it for type = "oauth"
        self.resource = AnyHttpUrl(auth.resource)
        verifier = JWTVerifier(
            public_key=auth.public_key,
            jwks_uri=auth.jwks_uri,
            issuer=auth.issuers,
            audience=_audiences(auth.resource, self.resource),
        )
        servers = auth.authorization_servers or ([auth.issuer] if auth.issuer else [])
        super().__init__(
            token_verifier=verifier,
            authorization_servers=[AnyHttpUrl(url) for url in servers],
            base_url=auth.resource,
            scopes_supported=list(auth.scopes_supported or auth.required_scopes),
            challenge_scopes=list(auth.required_scopes),
        )
        self.required_scopes = list(auth.required_scopes)

    def _get_resource_url(self, path: str | None = None) -> AnyHttpUrl | None:
        """The configured resource, whatever path FastMCP serves MCP at (docstring)."""
        return self.resource

    def get_routes(self, mcp_path: str | None = None) -> list[Route]:
        """The metadata at the path-suffixed well-known URL, and at the bare one."""
        routes = super().get_routes(mcp_path)
        if all(route.path != WELL_KNOWN for route in routes):
            served = routes[0]  # the SDK's metadata route, for the resource's path
            routes.append(Route(WELL_KNOWN, endpoint=served.endpoint, methods=["GET", "OPTIONS"]))
        return routes


def _audiences(configured: str, published: AnyHttpUrl) -> str | list[str]:
    """The `aud` values a token may carry: the resource as configured, and as the
    metadata publishes it, which pydantic normalizes (`https://x.test` becomes
    `https://x.test/`, the host lower case). Clients ask for a token for the published
    form (RFC 8707), so refusing it would lock out every client of such a resource."""
    return configured if str(published) == configured else [configured, str(published)]
