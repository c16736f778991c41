"""One backend's sign-in, kept in a vault: the MCP SDK's `TokenStorage` Protocol.

The SDK's `OAuthClientProvider` reads and writes tokens and the client's registration
through `TokenStorage`. Its `OAuthToken` only has `expires_in`, relative to when it was
issued, so a token read back after a restart would look fresh: the record here keeps the
absolute expiry beside it and hands back the time still left (FastMCP's
`TokenStorageAdapter` does the same over a key-value store; it is not used because its
keys are not ours to choose and it writes through `py-key-value`, not a keyring).

A record is keyed by the server's name and url: a token issued for one url is never sent
to another after the config changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio.to_thread
from mcp.client.auth.utils import union_scopes
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import BaseModel, ValidationError

from mcp_agg.backend.oauth.vault import TokenVaultError

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.vault import Vault

__all__ = [
    "Expiry",
    "RecordTokenStorage",
    "Records",
    "SignIn",
    "VaultTokenStorage",
    "record_key",
]


class _Record(BaseModel):
    tokens: OAuthToken | None = None
    #: Unix seconds when the access token expires; None: no expiry was given.
    expires_at: float | None = None
    client: OAuthClientInformationFull | None = None
    #: Scopes the backend asked for in a `403 insufficient_scope`, asked for at sign-in.
    required_scope: str | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """When the stored access token expires, and how long it lived when it was issued:
    what is left of it says nothing of how early to refresh it."""

    #: Unix seconds.
    at: float
    #: Seconds, as the authorization server's `expires_in` gave them.
    life: float


@dataclass(frozen=True, slots=True)
class SignIn:
    """What `status` says about one server's sign-in (never the tokens themselves)."""

    signed_in: bool
    #: When the access token expires (Unix seconds); None: unknown, or not signed in.
    expires_at: float | None
    #: A refresh token is kept, so an expired access token is renewed without the user.
    refreshable: bool


def record_key(name: str, url: str) -> str:
    return f"{name} {url}"


class Records(Protocol):
    """Text records by key, awaited: where a `RecordTokenStorage` keeps its record."""

    @property
    def where(self) -> str: ...

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...

    async def delete(self, key: str) -> None: ...


class _VaultRecords:
    """A (blocking) `Vault` as `Records`: each call in a worker thread."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    @property
    def where(self) -> str:
        return self.vault.where

    async def get(self, key: str) -> str | None:
        return await anyio.to_thread.run_sync(self.vault.get, key)

    async def set(self, key: str, value: str) -> None:
        await anyio.to_thread.run_sync(self.vault.set, key, value)

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self.vault.delete, key)


class RecordTokenStorage:
    """The SDK's `TokenStorage` for one sign-in, one record under `key` in `records`."""

    def __init__(self, records: Records, key: str) -> None:
        self.records = records
        self.key = key

    async def get_tokens(self) -> OAuthToken | None:
        record = await self._load()
        if record.tokens is None or record.expires_at is None:
            return record.tokens
        left = max(0, int(record.expires_at - time.time()))
        return record.tokens.model_copy(update={"expires_in": left})

    async def set_tokens(self, tokens: OAuthToken) -> None:
        record = await self._load()
        expires_at = None if tokens.expires_in is None else time.time() + tokens.expires_in
        await self._save(record.model_copy(update={"tokens": tokens, "expires_at": expires_at}))

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return (await self._load()).client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        record = await self._load()
        await self._save(record.model_copy(update={"client": client_info}))

    async def expiry(self) -> Expiry | None:
        """When the stored access token expires, if it said."""
        record = await self._load()
        if record.tokens is None or record.tokens.expires_in is None:
            return None
        if record.expires_at is None:
            return None
        return Expiry(at=record.expires_at, life=record.tokens.expires_in)

    async def sign_in(self) -> SignIn:
        record = await self._load()
        tokens = record.tokens
        return SignIn(
            signed_in=tokens is not None,
            expires_at=record.expires_at if tokens is not None else None,
            refreshable=tokens is not None and tokens.refresh_token is not None,
        )

    async def require_scope(self, scope: str) -> None:
        """Remember scopes a backend refused a request without, for the next sign-in."""
        record = await self._load()
        required = union_scopes(record.required_scope, scope)
        await self._save(record.model_copy(update={"required_scope": required}))

    async def required_scope(self) -> str | None:
        return (await self._load()).required_scope

    async def forget_tokens(self) -> None:
        """Forget the tokens only (a new sign-in): the registration and the scopes stay."""
        record = await self._load()
        await self._save(record.model_copy(update={"tokens": None, "expires_at": None}))

    async def clear(self) -> None:
        """Forget the tokens and the registration (`mcp-agg logout`)."""
        await self.records.delete(self.key)

    async def _load(self, key: str | None = None) -> _Record:
        key = self.key if key is None else key
        text = await self.records.get(key)
        if text is None:
            return _Record()
        try:
            return _Record.model_validate_json(text)
        except ValidationError:
            # Not the record's text in the message: it holds the tokens.
            raise TokenVaultError(
                f"the stored sign-in for {key!r} in {self.records.where} is damaged: sign in again"
            ) from None

    async def _save(self, record: _Record, key: str | None = None) -> None:
        text = record.model_dump_json(exclude_none=True)
        await self.records.set(self.key if key is None else key, text)


class VaultTokenStorage(RecordTokenStorage):
    """One server's sign-in for the whole gateway (`mcp-agg login`), in a `Vault`."""

    def __init__(self, vault: Vault, name: str, url: str) -> None:
        super().__init__(_VaultRecords(vault), record_key(name, url))
        self.vault = vault

    async def forget_client(self) -> None:
        """Forget the client registration only (one made for another redirect URI)."""
        record = await self._load()
        await self._save(record.model_copy(update={"client": None}))
