"""Sealed session ids (`[gateway] session_secret`): an `Mcp-Session-Id` any replica of a
fleet can resume, because the id itself carries the session.

What a handshake-era session is, once initialized, is small and fixed: the client's
`initialize` params (protocolVersion, capabilities, clientInfo), the version the server
negotiated, and who opened it (the credential the MCP SDK keys `_session_owners` on).
A `Ticket` holds exactly that; `SessionSealer` turns it into the id and back.

The id is a Fernet token (`cryptography`): AES-128-CBC encrypted, since capabilities
and clientInfo may say more about a client than it wants in a proxy's log, and
HMAC-SHA256 signed, so any change to it makes it fail to open; Fernet's own timestamp is
the issue time, checked against `MAX_AGE`. The JSON is deflated before sealing to keep
the header short (docs/fleet.md gives the length for a typical client). Fernet's
urlsafe base64 is visible ASCII, as the SDK requires of a session id.

The key is derived from `session_secret` with HKDF-SHA256 rather than used as is: the
secret is an operator's string of any length and alphabet, not 32 random bytes, and HKDF
turns it into a uniform key; its `info` label binds that key to this one use, so the
same secret can key something else later without the two ever sharing a key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import InvalidToken

from mcp_agg.security.keys import fernet_for

__all__ = ["MAX_AGE", "Owner", "SessionSealer", "Ticket", "fingerprint", "revocation_key"]

logger = logging.getLogger(__name__)

#: Seconds a sealed id is honoured after the session was opened: a client keeps one
#: session for a working day at most; past that it initializes again.
MAX_AGE = 24 * 60 * 60
#: The HKDF label: what the derived key is for (and which layout it seals).
_KEY_INFO = b"mcp-agg session id v1"
#: Version of the sealed layout, so a later one can be told apart.
_LAYOUT = 1

#: Who opened a session: the SDK's `AuthorizationContext` as (client_id, issuer,
#: subject); None on a front without auth.
Owner = tuple[str, str | None, str | None]


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a sealed id carries: enough to re-create the initialized session."""

    #: The client's `initialize` params as it sent them.
    client_params: Mapping[str, Any]
    #: The protocol version the server negotiated.
    protocol_version: str
    owner: Owner | None
    #: When the session was opened (Unix seconds); 0 in a ticket about to be sealed.
    issued_at: int = 0


class SessionSealer:
    """Seals tickets into session ids and opens them again, under one secret."""

    def __init__(self, secret: str, *, max_age: int = MAX_AGE) -> None:
        self._fernet = fernet_for(secret, _KEY_INFO)
        self.max_age = max_age

    def seal(self, ticket: Ticket, *, now: float | None = None) -> str:
        """The session id for `ticket`, issued `now` (default: the current time)."""
        payload = {
            "l": _LAYOUT,
            "p": dict(ticket.client_params),
            "v": ticket.protocol_version,
            "o": list(ticket.owner) if ticket.owner is not None else None,
        }
        raw = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 9)
        at = int(time.time() if now is None else now)
        return self._fernet.encrypt_at_time(raw, at).decode("ascii")

    def open(self, session_id: str, *, now: float | None = None) -> Ticket | None:
        """The ticket sealed in `session_id`; None if it was not sealed with this
        secret, was altered in any way, or is older than `max_age`."""
        at = int(time.time() if now is None else now)
        try:
            token = session_id.encode("ascii")
            raw = self._fernet.decrypt_at_time(token, ttl=self.max_age, current_time=at)
            issued_at = self._fernet.extract_timestamp(token)
            payload = json.loads(zlib.decompress(raw))
            return _ticket(payload, issued_at)
        except (InvalidToken, UnicodeEncodeError, zlib.error, ValueError, TypeError, KeyError):
            # Signed by this secret yet unreadable cannot happen short of a bug; an id
            # from elsewhere (a uuid, another fleet) or an altered one is simply unknown.
            return None


def _ticket(payload: Any, issued_at: int) -> Ticket | None:
    if not isinstance(payload, dict) or payload.get("l") != _LAYOUT:
        return None
    params, version, owner = payload["p"], payload["v"], payload["o"]
    if not isinstance(params, dict) or not isinstance(version, str):
        return None
    if owner is not None:
        client_id, issuer, subject = owner
        owner = (client_id, issuer, subject)
    return Ticket(params, version, owner, issued_at)


def revocation_key(session_id: str) -> str:
    """The store key that marks `session_id` revoked: a digest, so that the store (and
    whoever can read it) never holds a usable session id."""
    return "session-revoked:" + _digest(session_id)


def fingerprint(session_id: str) -> str:
    """A short name for `session_id` in log lines: its start is the same for every id
    sealed in the same second (Fernet's version and timestamp)."""
    return _digest(session_id)[:12]


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
