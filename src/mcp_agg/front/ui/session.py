"""Who may use the console: the admin token, as a login cookie or a bearer header.

The cookie never holds the token. Its value is `<issued>.<nonce>.<mac>`, the MAC an
HMAC-SHA256 under a key derived from the token: any replica of a fleet with the same
token accepts it, a changed token voids every cookie, and a stolen cookie does not
give away the token (which also opens the admin API). It expires after `SESSION_TTL`.

Actions (every POST) need a CSRF token as well, derived from the cookie, sent by the
page as the `X-CSRF-Token` header (htmx) or a `csrf` form field: a cross-site form or
script cannot read it, whatever the browser does with SameSite. A request that carries
`Authorization: Bearer <admin token>` needs none: a browser never adds that header on
its own, so it is not an ambient credential a forged request could ride on.

Every comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from mcp_agg.security.auth import bearer_token

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "SESSION_TTL", "ConsoleKeys", "Visitor"]

#: The login cookie's name.
COOKIE = "mcp_agg_console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
#: Seconds a login lasts.
SESSION_TTL = 12 * 3600


@dataclass(frozen=True, slots=True)
class Visitor:
    """An admitted request: by its cookie (`session` set; actions need `csrf`), or by
    the bearer token (`session` None; actions need no CSRF token)."""

    session: str | None

    @property
    def by_cookie(self) -> bool:
        return self.session is not None


class ConsoleKeys:
    """The admin token, and what is derived from it: login cookies and CSRF tokens."""

    def __init__(self, token: str, *, now: Callable[[], float] = time.time) -> None:
        self._token = token.encode()
        # A key of its own: a MAC under it says nothing about the token.
        self._key = hmac.new(self._token, b"mcp-agg console session v1", hashlib.sha256).digest()
        self._now = now

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def new_session(self) -> str:
        """A fresh login cookie's value."""
        body = f"{int(self._now())}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def session_valid(self, value: str) -> bool:
        body, _, mac = value.rpartition(".")
        issued, _, nonce = body.partition(".")
        if not (issued.isdigit() and nonce and mac):
            return False
        if not hmac.compare_digest(mac, self._mac(body)):
            return False
        age = self._now() - int(issued)
        return 0 <= age <= SESSION_TTL

    def csrf_for(self, session: str) -> str:
        """The CSRF token of a login session (what its pages send with each action)."""
        return self._mac(f"csrf.{session}")

    def csrf_valid(self, session: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given, self.csrf_for(session))

    def visitor(self, request: Request) -> Visitor | None:
        """Who is asking, or None: neither a valid cookie nor the admin bearer token."""
        given = bearer_token(request.headers.get("authorization"))
        if given is not None:
            return Visitor(None) if self.token_matches(given) else None
        session = request.cookies.get(COOKIE)
        if session is not None and self.session_valid(session):
            return Visitor(session)
        return None

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
