"""Tests for mcp_agg.security.resource and `[gateway.auth] type = "oauth"`: the config's
rules, the protected-resource metadata (RFC 9728) and the challenges of the MCP route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import RSAKeyPair

from mcp_agg.config import config_from_raw
from mcp_agg.errors import ConfigError
from mcp_agg.security.auth import Identity, build_verifier, identity_of
from mcp_agg.security.resource import ResourceServer

ISSUER = "https://issuer.test"
ORIGIN = "https://mcp.example.test"
RESOURCE = f"{ORIGIN}/mcp"
METADATA = f"{ORIGIN}/.well-known/oauth-protected-resource/mcp"


def load(auth: dict[str, Any]) -> Any:
    return config_from_raw({"gateway": {"auth": auth}}, Path("servers.toml"), {})


OAUTH: dict[str, Any] = {
    "type": "oauth",
    "issuer": ISSUER,
    "jwks_uri": f"{ISSUER}/jwks",
    "resource": RESOURCE,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resource": None}, "needs `resource`"),
        ({"resource": "mcp.example.test/mcp"}, "resource"),
        ({"resource": f"{RESOURCE}#frag"}, "must not have a fragment"),
        ({"issuer": None}, "needs `issuer` or `authorization_servers`"),
        ({"jwks_uri": None}, "exactly one of `jwks_uri` and `public_key`"),
        ({"public_key": "k"}, "exactly one of `jwks_uri` and `public_key`"),
        ({"audience": "other"}, "`audience` is `resource`"),
        ({"tokens": [{"token": "t", "client_id": "c"}]}, '`tokens` apply to type = "bearer"'),
        ({"authorization_servers": ["issuer.test"]}, "authorization_servers"),
        ({"required_scopes": ["a b"]}, "required_scopes"),
        (
            {"scopes_supported": ["mcp:read"], "required_scopes": ["mcp:write"]},
            "`required_scopes` mcp:write not in `scopes_supported`",
        ),
    ],
)
def test_oauth_config_errors(change: dict[str, Any], message: str) -> None:
    raw = {key: value for key, value in {**OAUTH, **change}.items() if value is not None}
    with pytest.raises(ConfigError, match=r"gateway\.auth") as error:
        load(raw)
    assert message in str(error.value)


@pytest.mark.parametrize("key", ["resource", "authorization_servers", "required_scopes"])
@pytest.mark.parametrize(
    "auth",
    [
        {"type": "jwt", "public_key": "k"},
        {"type": "bearer", "tokens": [{"token": "t", "client_id": "c"}]},
    ],
)
def test_oauth_keys_only_for_oauth(auth: dict[str, Any], key: str) -> None:
    value: Any = RESOURCE if key == "resource" else ["https://x.test"]
    with pytest.raises(ConfigError, match=f'`{key}` applies to type = "oauth"'):
        load({**auth, key: value})


def test_issuer_defaults_to_the_authorization_servers() -> None:
    servers = ["https://a.test", "https://b.test"]
    auth = load({**OAUTH, "issuer": None, "authorization_servers": servers}).gateway.auth
    assert auth.issuers == servers
    assert load(OAUTH).gateway.auth.issuers == ISSUER


@pytest.fixture(scope="module")
def keys() -> RSAKeyPair:
    return RSAKeyPair.generate()


@pytest_asyncio.fixture
async def front(keys: RSAKeyPair) -> AsyncIterator[httpx.AsyncClient]:
    """A FastMCP HTTP app behind the resource server, as the gateway's front builds it;
    without its lifespan, as nothing here gets past the auth layer to MCP."""
    auth = load(
        {
            **OAUTH,
            "jwks_uri": None,
            "public_key": keys.public_key,
            "scopes_supported": ["mcp:read", "mcp:write"],
            "required_scopes": ["mcp:read"],
            "roles_claim": "groups",
            "client_id_claim": "email",
        }
    ).gateway.auth
    server: FastMCP[Any] = FastMCP("t", auth=build_verifier(auth))
    app = server.http_app(transport="http", host_origin_protection=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"],
)
async def test_metadata_document(front: httpx.AsyncClient, path: str) -> None:
    response = await front.get(path)  # no token: discovery is outside auth
    assert response.status_code == 200
    assert response.json() == {
        "resource": RESOURCE,
        "authorization_servers": [f"{ISSUER}/"],
        "scopes_supported": ["mcp:read", "mcp:write"],
        "bearer_methods_supported": ["header"],
    }


def token(keys: RSAKeyPair, **kwargs: Any) -> str:
    claims = {"issuer": ISSUER, "audience": RESOURCE, "scopes": ["mcp:read"], **kwargs}
    return keys.create_token(**claims)


@pytest.mark.parametrize(
    ("kind", "status", "challenge"),
    [
        ("none", 401, f'Bearer scope="mcp:read", resource_metadata="{METADATA}"'),
        ("garbage", 401, 'error="invalid_token"'),
        ("other audience", 401, 'error="invalid_token"'),
        ("expired", 401, 'error="invalid_token"'),
        ("other issuer", 401, 'error="invalid_token"'),
        ("no scope", 403, 'error="insufficient_scope"'),
    ],
)
async def test_challenges(
    front: httpx.AsyncClient, keys: RSAKeyPair, kind: str, status: int, challenge: str
) -> None:
    bearer = {
        "none": None,
        "garbage": "not.a.jwt",
        "other audience": token(keys, audience="https://elsewhere.test/mcp"),
        "expired": token(keys, expires_in_seconds=-10),
        "other issuer": token(keys, issuer="https://other.test"),
        "no scope": token(keys, scopes=["mcp:write"]),
    }[kind]
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    response = await front.post("/mcp", headers=headers, json={})
    assert response.status_code == status
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer ")
    assert challenge in header
    assert f'resource_metadata="{METADATA}"' in header
    assert 'scope="mcp:read"' in header


async def test_a_valid_token_passes_and_names_the_caller(keys: RSAKeyPair) -> None:
    auth = load({**OAUTH, "jwks_uri": None, "public_key": keys.public_key}).gateway.auth
    verifier = build_verifier(auth)
    assert isinstance(verifier, ResourceServer)
    claims = {"sub": "u-1", "roles": ["reader"]}
    verified = await verifier.verify_token(token(keys, additional_claims=claims))
    assert verified is not None
    assert identity_of(verified, auth) == Identity("u-1", frozenset({"reader"}))


@pytest.mark.parametrize("resource", ["https://mcp.example.test", "https://MCP.example.test/mcp"])
async def test_a_token_for_the_published_resource_passes(keys: RSAKeyPair, resource: str) -> None:
    """The metadata publishes the resource normalized; a token for either form passes."""
    raw = {**OAUTH, "jwks_uri": None, "public_key": keys.public_key, "resource": resource}
    verifier = build_verifier(load(raw).gateway.auth)
    assert isinstance(verifier, ResourceServer)
    published = str(verifier.resource)
    assert published != resource
    for audience in (resource, published):
        assert await verifier.verify_token(token(keys, audience=audience)) is not None
    assert await verifier.verify_token(token(keys, audience=f"{published}x")) is None
