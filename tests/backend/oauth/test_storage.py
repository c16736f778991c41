"""One backend's sign-in as the SDK's TokenStorage, with its absolute expiry."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mcp.client.auth import TokenStorage
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from mcp_agg.backend.oauth.storage import SignIn, VaultTokenStorage
from mcp_agg.backend.oauth.vault import FileVault, TokenVaultError


def storage(tmp_path: Path, url: str = "https://h/mcp") -> VaultTokenStorage:
    return VaultTokenStorage(FileVault(tmp_path / "tokens.json", "key-0123456789abcdef"), "s", url)


async def test_tokens_come_back_with_the_time_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: TokenStorage = storage(tmp_path)
    start = time.time()
    monkeypatch.setattr(time, "time", lambda: start)
    await store.set_tokens(OAuthToken(access_token="at", refresh_token="rt", expires_in=3600))
    monkeypatch.setattr(time, "time", lambda: start + 3000)
    tokens = await store.get_tokens()
    assert tokens is not None
    assert (tokens.access_token, tokens.refresh_token, tokens.expires_in) == ("at", "rt", 600)
    monkeypatch.setattr(time, "time", lambda: start + 4000)
    tokens = await store.get_tokens()
    assert tokens is not None
    assert tokens.expires_in == 0


async def test_client_info_and_tokens_share_the_record(tmp_path: Path) -> None:
    store = storage(tmp_path)
    client = OAuthClientInformationFull(client_id="cid", redirect_uris=None)
    await store.set_client_info(client)
    await store.set_tokens(OAuthToken(access_token="at"))
    assert await store.get_client_info() == client
    assert await storage(tmp_path).get_tokens() == OAuthToken(access_token="at")
    assert await storage(tmp_path, "https://other/mcp").get_tokens() is None
    await store.forget_client()  # a registration for another redirect URI
    assert await store.get_client_info() is None
    assert await store.get_tokens() == OAuthToken(access_token="at")


async def test_sign_in_says_until_when_and_logout_forgets(tmp_path: Path) -> None:
    store = storage(tmp_path)
    assert await store.sign_in() == SignIn(signed_in=False, expires_at=None, refreshable=False)
    before = time.time()
    await store.set_tokens(OAuthToken(access_token="at", refresh_token="rt", expires_in=60))
    state = await store.sign_in()
    assert state.signed_in
    assert state.refreshable
    assert state.expires_at is not None
    assert before + 60 <= state.expires_at <= time.time() + 60
    await store.clear()
    assert await store.get_tokens() is None
    assert await store.get_client_info() is None


async def test_a_damaged_record_is_a_clear_error_without_its_text(tmp_path: Path) -> None:
    store = storage(tmp_path)
    store.vault.set(store.key, '{"tokens": {"access_token": 5, "secret-bit": 1}')
    with pytest.raises(TokenVaultError) as raised:
        await store.get_tokens()
    assert "sign in again" in str(raised.value)
    assert "secret-bit" not in str(raised.value)
