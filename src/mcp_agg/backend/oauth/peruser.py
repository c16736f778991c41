"""Where the token sets of `per_user = true` servers rest: one record per (user, server
name, server url), in the format of storage.py, Fernet-sealed with a key derived from
`[gateway] token_key` before it leaves the process.

The records go to a `SecretArea`: the fleet's store (`[gateway.store]`, so that every
replica sees a user's sign-in), else a local SQLite file under the user data directory,
created 0600. The dynamic registration of the gateway at a backend's authorization
server is shared by every user of that server: it is kept beside their records under a
key no user has (`client:`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Protocol

import anyio.to_thread
from cryptography.fernet import InvalidToken
from mcp.shared.auth import OAuthClientInformationFull

from mcp_agg.backend.oauth.storage import RecordTokenStorage, _Record
from mcp_agg.backend.oauth.vault import TokenVaultError, data_dir
from mcp_agg.security.keys import fernet_for

__all__ = ["SealedRecords", "SecretArea", "SqliteSecrets", "UserTokenStorage", "UserTokens"]

#: HKDF label of the key that seals per-user records (the vault's file uses another).
_USER_KEY_INFO = b"mcp-agg per-user backend tokens v1"


class SecretArea(Protocol):
    """Bytes by key, kept until deleted: the store's secret area, or `SqliteSecrets`."""

    async def get_secret(self, key: str) -> bytes | None: ...

    async def put_secret(self, key: str, value: bytes) -> None: ...

    async def delete_secret(self, key: str) -> None: ...


class SqliteSecrets:
    """A `SecretArea` in one SQLite file, 0600 in a 0700 folder; each call opens its
    own connection in a worker thread (sqlite3 is blocking, and a connection belongs to
    the thread that made it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: never readable by others, not even briefly.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        connection.execute("CREATE TABLE IF NOT EXISTS secrets (key TEXT PRIMARY KEY, value BLOB)")
        return connection

    def _get(self, key: str) -> bytes | None:
        connection = self._connect()
        try:
            row = connection.execute("SELECT value FROM secrets WHERE key = ?", (key,)).fetchone()
        finally:
            connection.close()
        return None if row is None else bytes(row[0])

    def _put(self, key: str, value: bytes) -> None:
        connection = self._connect()
        try:
            connection.execute(
                "INSERT INTO secrets (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        finally:
            connection.close()

    def _delete(self, key: str) -> None:
        connection = self._connect()
        try:
            connection.execute("DELETE FROM secrets WHERE key = ?", (key,))
        finally:
            connection.close()

    async def get_secret(self, key: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self._get, key)

    async def put_secret(self, key: str, value: bytes) -> None:
        await anyio.to_thread.run_sync(self._put, key, value)

    async def delete_secret(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._delete, key)


class SealedRecords:
    """storage.py's `Records` over a `SecretArea`, each record Fernet-sealed."""

    def __init__(self, area: SecretArea, token_key: str, where: str) -> None:
        self.area = area
        self._fernet = fernet_for(token_key, _USER_KEY_INFO)
        self._where = where

    @property
    def where(self) -> str:
        return self._where

    async def get(self, key: str) -> str | None:
        sealed = await self.area.get_secret(key)
        if sealed is None:
            return None
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise TokenVaultError(
                f"[gateway] token_key does not open the per-user tokens in {self._where}: "
                "use the key they were stored with, or have the users sign in again"
            ) from None

    async def set(self, key: str, value: str) -> None:
        await self.area.put_secret(key, self._fernet.encrypt(value.encode()))

    async def delete(self, key: str) -> None:
        await self.area.delete_secret(key)


def _key(*parts: str) -> str:
    """A record key from parts that may hold any character (a JSON list: unambiguous)."""
    return json.dumps(parts, separators=(",", ":"))


class UserTokenStorage(RecordTokenStorage):
    """The SDK's `TokenStorage` of one user's sign-in to one server: the tokens in the
    user's record, the client registration in the server's shared one."""

    def __init__(self, records: SealedRecords, user: str, server: str, url: str) -> None:
        super().__init__(records, _key("user", user, server, url))
        self.client_key = _key("client", server, url)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return (await self._load(self.client_key)).client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        await self._save(_Record(client=client_info), self.client_key)


class UserTokens:
    """Every user's token sets of this gateway, sealed with `token_key`."""

    def __init__(self, area: SecretArea, token_key: str, where: str) -> None:
        self.records = SealedRecords(area, token_key, where)

    @classmethod
    def local(cls, token_key: str, path: Path | None = None) -> UserTokens:
        """In the SQLite file under the user data directory (no `[gateway.store]`)."""
        path = path or data_dir() / "user-tokens.sqlite"
        return cls(SqliteSecrets(path), token_key, str(path))

    def storage(self, user: str, server: str, url: str) -> UserTokenStorage:
        return UserTokenStorage(self.records, user, server, url)
