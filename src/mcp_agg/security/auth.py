"""Authentication on the HTTP front (`[gateway.auth]`) and "who is calling".

- `type = "bearer"`: static tokens, each naming a client and its roles, checked by
  FastMCP's `StaticTokenVerifier` (tokens come from the environment through `${VAR}`).
- `type = "jwt"`: FastMCP's `JWTVerifier` (signature from `public_key` or `jwks_uri`,
  expiry, `issuer`, `audience`); the caller's roles are the `roles_claim` claim (a list,
  or a string of names separated by spaces or commas; a dotted name such as
  `realm_access.roles` walks nested objects), its identity the `client_id_claim` claim.
- `type = "oauth"`: the same JWT checks with the audience fixed to `resource`, plus the
  OAuth resource-server duties (metadata, challenges, scopes): `security/resource.py`.

FastMCP's HTTP app does the rest: with `auth=` set on the server, every request to
`/mcp` without a valid bearer token gets HTTP 401 with a `WWW-Authenticate: Bearer`
challenge (`error="invalid_token"` when a token was sent) before any MCP processing.
Stdio has no tokens: its caller is the local user, and auth applies to HTTP only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastmcp.server.auth import AccessToken, AuthProvider
from fastmcp.server.dependencies import get_access_token, get_http_request

from mcp_agg.config import AuthConfig, GatewayConfig
from mcp_agg.security.access import DENY_ALL, AccessPolicy, Grant

__all__ = [
    "ANONYMOUS",
    "CONSOLE",
    "CallerAccess",
    "Identity",
    "bearer_token",
    "build_verifier",
    "caller_id",
    "current_identity",
    "current_user",
    "identity_of",
    "user_of",
]

#: The caller of an HTTP request without a token (a gateway without `[gateway.auth]`).
ANONYMOUS = "anonymous"

logger = logging.getLogger(__name__)

#: The claim a static token's roles are kept under in its AccessToken.
_STATIC_ROLES = "roles"
_SEPARATORS = re.compile(r"[\s,]+")


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: who it is and the roles it holds."""

    client_id: str
    roles: frozenset[str]


def build_verifier(auth: AuthConfig) -> AuthProvider:
    """The FastMCP token verifier for `[gateway.auth]`."""
    if auth.type == "oauth":
        from mcp_agg.security.resource import ResourceServer

        return ResourceServer(auth)
    if auth.type == "bearer":
        from fastmcp.server.auth.providers.jwt import StaticTokenVerifier

        return StaticTokenVerifier(
            tokens={
                t.token: {"client_id": t.client_id, "scopes": [], _STATIC_ROLES: list(t.roles)}
                for t in auth.tokens
            }
        )
    from fastmcp.server.auth.providers.jwt import JWTVerifier

    return JWTVerifier(
        public_key=auth.public_key,
        jwks_uri=auth.jwks_uri,
        issuer=auth.issuer,
        audience=auth.audience,
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one (for
    the routes beside `/mcp`, which check tokens of their own: /metrics, /admin)."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _roles(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(r for r in _SEPARATORS.split(value) if r)
    if isinstance(value, list | tuple):
        return frozenset(r for r in value if isinstance(r, str) and r)
    return frozenset()


def identity_of(token: AccessToken, auth: AuthConfig) -> Identity:
    """The caller a verified token stands for."""
    claims = token.claims or {}
    if auth.type == "bearer":
        return Identity(token.client_id, _roles(claims.get(_STATIC_ROLES)))
    client_id = _claim(claims, auth.client_id_claim)
    return Identity(
        str(client_id) if client_id is not None else token.client_id,
        _roles(_claim(claims, auth.roles_claim)),
    )


def user_of(token: AccessToken, auth: AuthConfig) -> str:
    """Whose backend tokens a caller uses on a `per_user` server: a JWT's issuer and
    subject (`jwt` and `oauth` fronts: the same person whatever client they use, and
    never a person of another issuer), a static token's client id (`bearer`). The one
    rule that names a user; docs/signing-in.md says it to operators."""
    claims = token.claims or {}
    subject = claims.get("sub")
    if auth.type == "bearer" or not isinstance(subject, str) or not subject:
        return f"client:{token.client_id}"
    issuer = claims.get("iss")
    return f"jwt:{issuer if isinstance(issuer, str) else ''} {subject}"


def current_user(auth: AuthConfig | None) -> str | None:
    """`user_of` the current request's token; None without one."""
    if auth is None:
        return None
    token = get_access_token()
    return None if token is None else user_of(token, auth)


def current_identity(auth: AuthConfig | None) -> Identity | None:
    """The authenticated caller of the current request; None without a token (stdio,
    in-memory clients, or a gateway without `[gateway.auth]`)."""
    if auth is None:
        return None
    token = get_access_token()
    return None if token is None else identity_of(token, auth)


#: Set while the web console's tool runner makes a call (front/ui/routes.py): the
#: caller is the console's admin, whatever request or front it came through.
console_call: ContextVar[bool] = ContextVar("mcp_agg_console_call", default=False)

#: The caller id of a call made from the web console.
CONSOLE = "console"


def caller_id(auth: AuthConfig | None) -> str:
    """Who is calling, for rate limits and the audit log: the authenticated client id,
    else `console` for the web console's tool runner, else `anonymous` on HTTP, else
    `stdio`. The one place that names a caller."""
    if console_call.get():
        return CONSOLE
    try:
        identity = current_identity(auth)
    except RuntimeError:  # no request in context
        identity = None
    if identity is not None and identity.client_id:
        return identity.client_id
    try:
        get_http_request()
    except RuntimeError:
        return "stdio"
    return ANONYMOUS


class CallerAccess:
    """The grant of the current caller on an authenticated HTTP front.

    Every request that reaches the MCP layer there carries a verified token (FastMCP
    answers 401 otherwise); one that somehow carries none is allowed nothing.
    """

    def __init__(self, settings: GatewayConfig) -> None:
        assert settings.auth is not None
        self.auth: AuthConfig = settings.auth
        self.policy = AccessPolicy(settings.roles)
        self._warned: set[str] = set()

    def grant(self) -> Grant:
        identity = current_identity(self.auth)
        if identity is None:
            return DENY_ALL
        unknown = identity.roles - self.policy.roles.keys() - self._warned
        if unknown and self.policy.roles:
            self._warned |= unknown
            logger.warning(
                "client %s holds roles not defined in [gateway.roles], which grant nothing: %s",
                identity.client_id,
                ", ".join(sorted(unknown)),
            )
        return self.policy.grant(identity.roles)
