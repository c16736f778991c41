"""Tests for mcp_agg.security.auth and `[gateway.auth]`: config -> verifier -> identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastmcp.server.auth import AccessToken
from fastmcp.server.auth.providers.jwt import JWTVerifier, RSAKeyPair, StaticTokenVerifier

from mcp_agg.config import AuthConfig, config_from_raw
from mcp_agg.errors import ConfigError
from mcp_agg.security.auth import Identity, build_verifier, identity_of, user_of

ISSUER, AUDIENCE = "https://issuer.test", "mcp-agg"


def load(gateway: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    return config_from_raw({"gateway": gateway}, Path("servers.toml"), environ or {})


BEARER = {
    "auth": {
        "type": "bearer",
        "tokens": [
            {"token": "${ALICE_TOKEN}", "client_id": "alice", "roles": ["admin"]},
            {"token": "${BOB_TOKEN}", "client_id": "bob", "roles": ["reader", "admin"]},
        ],
    },
    "roles": {"admin": {"allow": ["*"]}, "reader": {"allow": ["notes_*"]}},
}


async def test_bearer_tokens_from_the_environment() -> None:
    config = load(BEARER, {"ALICE_TOKEN": "a-secret", "BOB_TOKEN": "b-secret"})
    verifier = build_verifier(config.gateway.auth)
    assert isinstance(verifier, StaticTokenVerifier)
    alice = await verifier.verify_token("a-secret")
    assert alice is not None
    assert identity_of(alice, config.gateway.auth) == Identity("alice", frozenset({"admin"}))
    bob = await verifier.verify_token("b-secret")
    assert bob is not None
    assert identity_of(bob, config.gateway.auth).roles == {"reader", "admin"}
    for wrong in ("", "a-secre", "a-secret ", "${ALICE_TOKEN}"):
        assert await verifier.verify_token(wrong) is None


def test_bearer_config_errors() -> None:
    with pytest.raises(ConfigError, match="ALICE_TOKEN"):
        load(BEARER, {"BOB_TOKEN": "b"})  # an unset variable is an error, never ""
    with pytest.raises(ConfigError, match="needs at least one"):
        load({"auth": {"type": "bearer"}})
    same = {"ALICE_TOKEN": "x", "BOB_TOKEN": "x"}
    with pytest.raises(ConfigError, match="token given twice"):
        load(BEARER, same)
    with pytest.raises(ConfigError, match="role 'ghost' is not defined"):
        load(
            {
                "auth": {
                    "type": "bearer",
                    "tokens": [{"token": "t", "client_id": "c", "roles": ["ghost"]}],
                }
            }
        )
    with pytest.raises(ConfigError, match='apply to type = "jwt"'):
        load(
            {
                "auth": {
                    "type": "bearer",
                    "issuer": ISSUER,
                    "tokens": [{"token": "t", "client_id": "c"}],
                }
            }
        )
    with pytest.raises(ConfigError, match="unknown key"):
        load({"auth": {"type": "bearer", "tokens": [{"token": "t", "client": "c"}]}})


def test_jwt_config_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one of"):
        load({"auth": {"type": "jwt"}})
    with pytest.raises(ConfigError, match="exactly one of"):
        load({"auth": {"type": "jwt", "public_key": "k", "jwks_uri": "https://x/jwks"}})
    with pytest.raises(ConfigError, match="apply to type"):
        load(
            {
                "auth": {
                    "type": "jwt",
                    "public_key": "k",
                    "tokens": [{"token": "t", "client_id": "c"}],
                }
            }
        )
    with pytest.raises(ConfigError, match="jwks_uri"):
        load({"auth": {"type": "jwt", "jwks_uri": "file:///etc/keys"}})


@pytest.fixture(scope="module")
def keys() -> RSAKeyPair:
    return RSAKeyPair.generate()


def jwt_auth(keys: RSAKeyPair, **extra: Any) -> AuthConfig:
    return AuthConfig(
        type="jwt", issuer=ISSUER, audience=AUDIENCE, public_key=keys.public_key, **extra
    )


async def test_jwt_verifier_and_identity(keys: RSAKeyPair) -> None:
    auth = jwt_auth(keys)
    verifier = build_verifier(auth)
    assert isinstance(verifier, JWTVerifier)
    assert verifier.issuer == ISSUER
    assert verifier.audience == AUDIENCE
    token = keys.create_token(
        subject="u-1", issuer=ISSUER, audience=AUDIENCE, additional_claims={"roles": ["a", "b"]}
    )
    verified = await verifier.verify_token(token)
    assert verified is not None
    assert identity_of(verified, auth) == Identity("u-1", frozenset({"a", "b"}))


@pytest.mark.parametrize(
    ("claims", "roles"),
    [
        ({"groups": "a b,c"}, {"a", "b", "c"}),  # a string of names
        ({"groups": ["a", 3, ""]}, {"a"}),  # non-strings ignored
        ({"groups": {"a": True}}, set()),  # neither: no roles
        ({}, set()),
    ],
)
async def test_jwt_roles_claim_shapes(
    keys: RSAKeyPair, claims: dict[str, Any], roles: set[str]
) -> None:
    auth = jwt_auth(keys, roles_claim="groups", client_id_claim="email")
    token = keys.create_token(
        issuer=ISSUER, audience=AUDIENCE, additional_claims={"email": "e@x.test", **claims}
    )
    verified = await build_verifier(auth).verify_token(token)
    assert verified is not None
    assert identity_of(verified, auth) == Identity("e@x.test", frozenset(roles))


async def test_jwt_nested_roles_claim(keys: RSAKeyPair) -> None:
    auth = jwt_auth(keys, roles_claim="realm_access.roles")
    token = keys.create_token(
        issuer=ISSUER, audience=AUDIENCE, additional_claims={"realm_access": {"roles": ["r"]}}
    )
    verified = await build_verifier(auth).verify_token(token)
    assert verified is not None
    assert identity_of(verified, auth).roles == {"r"}


async def test_jwt_rejections(keys: RSAKeyPair) -> None:
    verifier = build_verifier(jwt_auth(keys))
    bad = [
        keys.create_token(issuer=ISSUER, audience=AUDIENCE, expires_in_seconds=-10),
        keys.create_token(issuer=ISSUER, audience="other"),
        keys.create_token(issuer="https://other.test", audience=AUDIENCE),
        RSAKeyPair.generate().create_token(issuer=ISSUER, audience=AUDIENCE),
        "not.a.jwt",
    ]
    for token in bad:
        assert await verifier.verify_token(token) is None


async def test_the_user_of_a_jwt_is_its_issuer_and_subject(keys: RSAKeyPair) -> None:
    auth = jwt_auth(keys, client_id_claim="email")
    verifier = build_verifier(auth)
    users = []
    for subject in ("u-1", "u-2"):
        token = keys.create_token(
            subject=subject,
            issuer=ISSUER,
            audience=AUDIENCE,
            additional_claims={"email": "same@x.test"},
        )
        verified = await verifier.verify_token(token)
        assert verified is not None
        users.append(user_of(verified, auth))
    # One client id claim, two people: two users.
    assert users == [f"jwt:{ISSUER} u-1", f"jwt:{ISSUER} u-2"]


def test_the_user_of_a_static_token_is_its_client_id() -> None:
    auth = AuthConfig(type="bearer", tokens=[{"token": "t-alice", "client_id": "alice"}])
    token = AccessToken(token="t-alice", client_id="alice", scopes=[], claims={"sub": "x"})
    assert user_of(token, auth) == "client:alice"
