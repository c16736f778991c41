"""Where backend tokens rest: the OS keyring, else a file only the user can read.

A vault holds opaque text records by key; what a record means is `storage.py`'s business.
The keyring is preferred where it has a real backend (macOS Keychain, Windows Credential
Locker, Secret Service): the OS guards it. A headless Linux box has none, so the records go
to one JSON file under the user's data directory, created 0600 in a 0700 folder and
replaced atomically; with `[gateway] token_key` each record is Fernet-encrypted (AES and
HMAC) under a key derived from it, so a copied file or backup gives nothing away.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.fernet import InvalidToken

from mcp_agg.errors import GatewayError
from mcp_agg.security.keys import fernet_for

if TYPE_CHECKING:
    # Imported where a token rests or is read: every gateway imports this module (the
    # OAuth provider does), few use the keyring (docs/benchmarks.md, memory).
    import keyring.backend

__all__ = [
    "FileVault",
    "KeyringVault",
    "TokenVaultError",
    "Vault",
    "data_dir",
    "default_vault",
    "keyring_available",
]

#: The keyring's service name for every record of the gateway.
SERVICE = "mcp-agg"
#: HKDF label: what a key derived from `token_key` is for.
_KEY_INFO = b"mcp-agg backend tokens v1"
#: A record's prefix in the file: encrypted, or plain JSON.
_SEALED, _PLAIN = "fernet:", "plain:"


class TokenVaultError(GatewayError):
    """The stored tokens cannot be read: encrypted without a key, or with another key."""


class Vault(Protocol):
    """Text records by key. Blocking calls: callers run them in a worker thread."""

    @property
    def where(self) -> str:
        """Where the records are, for `status` and `login`'s message."""
        ...

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def delete(self, key: str) -> None: ...


class KeyringVault:
    """Records in the OS keyring, one password per key under the service `mcp-agg`."""

    def __init__(self, backend: keyring.backend.KeyringBackend | None = None) -> None:
        import keyring

        self._backend = backend or keyring.get_keyring()

    @property
    def where(self) -> str:
        return f"the OS keyring ({type(self._backend).__name__})"

    def get(self, key: str) -> str | None:
        return self._backend.get_password(SERVICE, key)

    def set(self, key: str, value: str) -> None:
        self._backend.set_password(SERVICE, key, value)

    def delete(self, key: str) -> None:
        import keyring.errors

        with contextlib.suppress(keyring.errors.PasswordDeleteError):
            self._backend.delete_password(SERVICE, key)


class FileVault:
    """Records in one JSON file, 0600, each encrypted when there is a key."""

    def __init__(self, path: Path, token_key: str | None = None) -> None:
        self.path = path
        self._fernet = None if token_key is None else fernet_for(token_key, _KEY_INFO)

    @property
    def where(self) -> str:
        sealed = "encrypted with token_key" if self._fernet else "not encrypted: no token_key"
        return f"{self.path} ({sealed})"

    def get(self, key: str) -> str | None:
        with self._locked():
            record = self._read().get(key)
        return None if record is None else self._open(record)

    def set(self, key: str, value: str) -> None:
        with self._locked():
            records = self._read()
            records[key] = self._seal(value)
            self._write(records)

    def delete(self, key: str) -> None:
        with self._locked():
            records = self._read()
            if records.pop(key, None) is not None:
                self._write(records)

    def _seal(self, value: str) -> str:
        if self._fernet is None:
            return _PLAIN + value
        return _SEALED + self._fernet.encrypt(value.encode()).decode("ascii")

    def _open(self, record: str) -> str:
        if record.startswith(_PLAIN):
            return record.removeprefix(_PLAIN)
        if self._fernet is None:
            raise TokenVaultError(
                f"the tokens in {self.path} are encrypted: set [gateway] token_key to the key "
                "they were stored with, or sign in again"
            )
        try:
            return self._fernet.decrypt(record.removeprefix(_SEALED).encode()).decode()
        except InvalidToken:
            raise TokenVaultError(
                f"[gateway] token_key does not open the tokens in {self.path}: "
                "use the key they were stored with, or sign in again"
            ) from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time: `mcp-agg login` and a running gateway share the file."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise TokenVaultError(f"cannot read the tokens in {self.path}: {exc}") from None
        if not isinstance(data, dict):
            raise TokenVaultError(f"cannot read the tokens in {self.path}: not a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, str)}

    def _write(self, records: dict[str, str]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # O_CREAT's mode is ignored for a file left over from a crash: set it again.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(records, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


def keyring_available(backend: keyring.backend.KeyringBackend | None = None) -> bool:
    """Whether the keyring has a real backend: the `fail` and `null` ones (priority <= 0),
    and a chainer with no backend behind it, do not keep anything."""
    import keyring

    chosen = backend or keyring.get_keyring()
    return float(chosen.priority) > 0


def data_dir() -> Path:
    """The user's data directory for the gateway: platformdirs' answer where it is
    installed (it knows macOS and Windows), else `$XDG_DATA_HOME/mcp-agg`."""
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs comes with most installs
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "mcp-agg"
    return Path(platformdirs.user_data_dir("mcp-agg", appauthor=False))


def default_vault(token_key: str | None) -> Vault:
    """The keyring where it has a backend, else the file under the user's data dir."""
    if keyring_available():
        return KeyringVault()
    return FileVault(data_dir() / "tokens.json", token_key)
