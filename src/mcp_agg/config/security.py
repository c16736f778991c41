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


class AuthConfig(StrictModel):
    """`[gateway.auth]`: who may use the HTTP front."""

    type: Literal["bearer", "jwt"]
    tokens: list[TokenConfig] = []
    #: JWT: the expected issuer and audience, and where the signing key comes from.
    issuer: str | None = None
    audience: str | list[str] | None = None
    jwks_uri: Annotated[str, Field(pattern=r"^https?://")] | None = None
    public_key: str | None = None
    #: JWT: the claim that lists the caller's roles, and the one that names it.
    roles_claim: str = "roles"
    client_id_claim: str = "sub"

    @model_validator(mode="after")
    def _check_type(self) -> AuthConfig:
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
        else:
            if self.tokens:
                raise ValueError('`tokens` apply to type = "bearer"')
            if (self.jwks_uri is None) == (self.public_key is None):
                raise ValueError('type = "jwt" needs exactly one of `jwks_uri` and `public_key`')
        return self


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
