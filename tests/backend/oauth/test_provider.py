"""The SDK's OAuth provider as the gateway builds it: stored expiry restored, an operator's
client used as is, and no authorization in a running gateway."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mcp.shared.auth import OAuthToken

from mcp_agg.backend.oauth.provider import BackendOAuth, NotSignedIn
from mcp_agg.backend.oauth.storage import VaultTokenStorage
from mcp_agg.backend.oauth.vault import FileVault
from mcp_agg.config.backendauth import BackendOAuthConfig

URL = "https://h/mcp"


def provider(tmp_path: Path, config: BackendOAuthConfig) -> BackendOAuth:
    storage = VaultTokenStorage(FileVault(tmp_path / "tokens.json"), "s", URL)
    return BackendOAuth(server="s", replica="s-1", url=URL, config=config, storage=storage)


async def test_a_stored_token_keeps_its_expiry(tmp_path: Path) -> None:
    oauth = provider(tmp_path, BackendOAuthConfig(type="oauth"))
    await oauth.storage.set_tokens(OAuthToken(access_token="at", expires_in=600))
    await oauth._initialize()
    expiry = oauth.context.token_expiry_time
    assert expiry is not None
    # Refreshed 30 s early: an authorization server may round its expiry down.
    assert time.time() + 560 < expiry <= time.time() + 570


async def test_a_configured_client_is_used_as_is(tmp_path: Path) -> None:
    config = BackendOAuthConfig(type="oauth", client_id="cid", client_secret="cs-123456")
    oauth = provider(tmp_path, config)
    await oauth._initialize()
    client = oauth.context.client_info
    assert client is not None
    assert (client.client_id, client.client_secret) == ("cid", "cs-123456")
    assert client.token_endpoint_auth_method == "client_secret_basic"


async def test_a_running_gateway_never_authorizes(tmp_path: Path) -> None:
    config = BackendOAuthConfig(type="oauth", scopes=["a", "b"], client_id="cid")
    oauth = provider(tmp_path, config)
    await oauth._initialize()
    assert oauth.context.client_metadata.scope == "a b"
    with pytest.raises(NotSignedIn, match="run `mcp-agg login s`"):
        await oauth._perform_authorization_code_grant()
