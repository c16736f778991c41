"""Per-user token sets (`per_user = true`): one sealed record per user and server, in
the store or a local SQLite file; the registration shared by the server's users."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from mcp_agg.backend.oauth.peruser import SecretArea, SqliteSecrets, UserTokens
from mcp_agg.backend.oauth.vault import TokenVaultError
from mcp_agg.store import MemoryStore

KEY = "token-key-0123456789"
URL = "https://h/mcp"


@pytest.fixture(params=["sqlite", "store"])
def area(request: pytest.FixtureRequest, tmp_path: Path) -> SecretArea:
    if request.param == "sqlite":
        return SqliteSecrets(tmp_path / "data" / "user-tokens.sqlite")
    return MemoryStore()


async def test_each_user_has_a_token_set_and_the_registration_is_shared(area: SecretArea) -> None:
    tokens = UserTokens(area, KEY, "here")
    alice, bob = tokens.storage("alice", "s", URL), tokens.storage("bob", "s", URL)
    await alice.set_tokens(OAuthToken(access_token="alice-at", refresh_token="alice-rt"))
    await alice.set_client_info(OAuthClientInformationFull(client_id="cid", redirect_uris=None))
    assert await bob.get_tokens() is None
    client = await bob.get_client_info()
    assert client is not None
    assert client.client_id == "cid"
    found = await alice.get_tokens()
    assert found is not None
    assert found.access_token == "alice-at"
    # Another url of the same name is another sign-in.
    assert await tokens.storage("alice", "s", "https://other/mcp").get_tokens() is None
    await alice.clear()
    assert await alice.get_tokens() is None


async def test_records_are_sealed_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "user-tokens.sqlite"
    tokens = UserTokens(SqliteSecrets(path), KEY, str(path))
    await tokens.storage("alice", "s", URL).set_tokens(
        OAuthToken(access_token="secret-access-token", refresh_token="secret-refresh-token")
    )
    raw = path.read_bytes()
    assert b"secret-access-token" not in raw
    assert b"secret-refresh-token" not in raw
    with sqlite3.connect(path) as connection:
        values = [bytes(v) for (v,) in connection.execute("SELECT value FROM secrets")]
    assert values
    assert all(b"secret" not in v for v in values)
    with pytest.raises(TokenVaultError, match="token_key does not open"):
        await (
            UserTokens(SqliteSecrets(path), "another-key-012345", str(path))
            .storage("alice", "s", URL)
            .get_tokens()
        )


async def test_the_sqlite_file_is_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "data" / "user-tokens.sqlite"
    await SqliteSecrets(path).put_secret("k", b"v")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert await SqliteSecrets(path).get_secret("k") == b"v"
