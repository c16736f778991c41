"""The security tables of `[gateway]`: authentication, roles, rate limits and the admin API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mcp_agg.config.base import StrictModel

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "RateConfig",
    "RateLimitConfig",
    "RoleConfig",
    "TokenConfig",
]


class TokenConfig(StrictModel):
    """One static bearer token (`[[gateway.auth.tokens]]`): read it from the environment."""

    token: Annotated[str, Field(min_length=1)]
    client_id: Annotated[str, Field(min_length=1)]
    roles: list[str] = []


_URL = r"^https?://"


class AuthConfig(StrictModel):
    """`[gateway.auth]`: who may use the HTTP front."""

    type: Literal["bearer", "jwt", "oauth"]
    tokens: list[TokenConfig] = []
    #: JWT and OAuth: the expected issuer, and where the signing key comes from.
    issuer: str | None = None
    audience: str | list[str] | None = None
    jwks_uri: Annotated[str, Field(pattern=_URL)] | None = None
    public_key: str | None = None
    #: JWT and OAuth: the claim that lists the caller's roles, and the one that names it.
    roles_claim: str = "roles"
    client_id_claim: str = "sub"
    #: OAuth (RFC 9728): the gateway's public URL, which is every token's audience
    #: (RFC 8707), the authorization servers that issue them, and the scopes.
    resource: Annotated[str, Field(pattern=_URL)] | None = None
    authorization_servers: list[Annotated[str, Field(pattern=_URL)]] = []
    scopes_supported: list[Annotated[str, Field(min_length=1, pattern=r"^\S+$")]] = []
    required_scopes: list[Annotated[str, Field(min_length=1, pattern=r"^\S+$")]] = []

    @model_validator(mode="after")
    def _check_type(self) -> AuthConfig:
        if self.type != "oauth":
            _only_for_oauth(self)
        if self.type == "bearer":
            if not self.tokens:
                raise ValueError('type = "bearer" needs at least one [[gateway.auth.tokens]]')
            if self.jwks_uri or self.public_key or self.issuer or self.audience:
                raise ValueError(
                    '`issuer`, `audience`, `jwks_uri` and `public_key` apply to type = "jwt"'
                )
            seen: set[str] = set()
            for index, token in enumerate(self.tokens):
                if token.token in seen:
                    raise ValueError(f"tokens[{index}] ({token.client_id}): token given twice")
                seen.add(token.token)
            return self
        if self.tokens:
            raise ValueError('`tokens` apply to type = "bearer"')
        if (self.jwks_uri is None) == (self.public_key is None):
            raise ValueError(
                f'type = "{self.type}" needs exactly one of `jwks_uri` and `public_key`'
            )
        if self.type == "oauth":
            _check_oauth(self)
        return self

    @property
    def issuers(self) -> str | list[str] | None:
        """The `iss` values a token may carry: `issuer`, else (OAuth) any of the
        `authorization_servers`, whose issuer identifier is their URL (RFC 8414)."""
        if self.issuer is not None or self.type != "oauth":
            return self.issuer
        return list(self.authorization_servers)


def _only_for_oauth(auth: AuthConfig) -> None:
    for key in ("resource", "authorization_servers", "scopes_supported", "required_scopes"):
        if getattr(auth, key):
            raise ValueError(f'`{key}` applies to type = "oauth"')


def _check_oauth(auth: AuthConfig) -> None:
    if auth.resource is None:
        raise ValueError(
            'type = "oauth" needs `resource`, the gateway\'s public URL '
            "(e.g. https://mcp.example.com/mcp)"
        )
    if "#" in auth.resource:
        raise ValueError("`resource` must not have a fragment (RFC 9728)")
    if auth.audience is not None:
        raise ValueError('`audience` is `resource` for type = "oauth"; remove `audience`')
    if auth.issuer is None and not auth.authorization_servers:
        raise ValueError('type = "oauth" needs `issuer` or `authorization_servers`')
    if auth.scopes_supported:
        missing = [s for s in auth.required_scopes if s not in auth.scopes_supported]
        if missing:
            raise ValueError(f"`required_scopes` {', '.join(missing)} not in `scopes_supported`")


class RoleConfig(StrictModel):
    """`[gateway.roles.NAME]`: glob patterns over exposed names; deny wins over allow."""

    allow: list[str] = []
    deny: list[str] = []


class RateConfig(StrictModel):
    """A token bucket: `burst` calls at once, refilled at `requests_per_second`."""

    requests_per_second: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)]


class RateLimitConfig(RateConfig):
    """`[gateway.rate_limit]`, per client identity; `tools` overrides it for the exposed
    names matching a glob pattern (the first pattern that matches, in order)."""

    tools: dict[str, RateConfig] = {}


class AdminConfig(StrictModel):
    """`[gateway.admin]`: the admin HTTP API (servers' state, register, unregister).

    Off unless present; every request needs `Authorization: Bearer <token>`.
    """

    token: Annotated[str, Field(min_length=16)]
