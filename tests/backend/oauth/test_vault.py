"""Where backend tokens rest: keyring or a 0600 file, encrypted with `token_key`."""

from __future__ import annotations

import stat
from pathlib import Path

import keyring.backend
import keyring.backends.fail
import keyring.errors
import pytest

from mcp_agg.backend.oauth import vault as vault_module
from mcp_agg.backend.oauth.vault import (
    FileVault,
    KeyringVault,
    TokenVaultError,
    default_vault,
    keyring_available,
)

TOKEN_KEY = "a-token-key-of-some-length"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring backend that works, as a desktop's does."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


def test_the_file_is_readable_only_by_the_user(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tokens.json"
    FileVault(path).set("k", "v")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_records_round_trip_and_are_deleted(tmp_path: Path) -> None:
    vault = FileVault(tmp_path / "tokens.json")
    vault.set("a", "one")
    vault.set("b", "two")
    vault.delete("a")
    vault.delete("missing")
    assert (vault.get("a"), vault.get("b")) == (None, "two")


def test_with_token_key_the_file_holds_no_plain_value(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    FileVault(path, TOKEN_KEY).set("k", "access-token-xyz")
    assert "access-token-xyz" not in path.read_text()
    assert FileVault(path, TOKEN_KEY).get("k") == "access-token-xyz"


def test_without_token_key_the_value_is_plain(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    FileVault(path).set("k", "access-token-xyz")
    assert "access-token-xyz" in path.read_text()


@pytest.mark.parametrize(
    ("reader_key", "fragment"),
    [(None, "are encrypted: set [gateway] token_key"), ("another-key-0123456", "does not open")],
)
def test_encrypted_tokens_need_their_key(
    tmp_path: Path, reader_key: str | None, fragment: str
) -> None:
    path = tmp_path / "tokens.json"
    FileVault(path, TOKEN_KEY).set("k", "access-token-xyz")
    with pytest.raises(TokenVaultError) as raised:
        FileVault(path, reader_key).get("k")
    assert fragment in str(raised.value)
    assert "access-token-xyz" not in str(raised.value)


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    with pytest.raises(TokenVaultError, match="cannot read the tokens in"):
        FileVault(path).get("k")


def test_keyring_vault_uses_the_backend() -> None:
    backend = MemoryKeyring()
    vault = KeyringVault(backend)
    vault.set("k", "v")
    assert backend.passwords == {("mcp-agg", "k"): "v"}
    vault.delete("k")
    vault.delete("k")  # already gone: no error
    assert vault.get("k") is None


@pytest.mark.parametrize(
    ("backend", "expected"),
    [(MemoryKeyring(), True), (keyring.backends.fail.Keyring(), False)],
)
def test_keyring_is_used_only_with_a_real_backend(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    backend: keyring.backend.KeyringBackend,
    expected: bool,
) -> None:
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    monkeypatch.setattr(vault_module, "data_dir", lambda: tmp_path)
    assert keyring_available() is expected
    chosen = default_vault(TOKEN_KEY)
    if expected:
        assert isinstance(chosen, KeyringVault)
    else:
        assert isinstance(chosen, FileVault)
        assert chosen.path == tmp_path / "tokens.json"
        assert "encrypted with token_key" in chosen.where
