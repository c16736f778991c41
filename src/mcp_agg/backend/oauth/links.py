"""The sealed values of a per-user sign-in: the ticket of a sign-in link, and the OAuth
`state` the authorization server hands back to the callback.

Both are Fernet tokens under keys derived from `[gateway] token_key` (each with its own
HKDF label, so one is never accepted as the other), so any replica of a fleet opens
what another sealed: the browser may land on any of them. Nothing about the flow is
kept in a replica's memory.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from cryptography.fernet import Fernet, InvalidToken

from mcp_agg.errors import GatewayError
from mcp_agg.security.keys import fernet_for

__all__ = [
    "GATEWAY",
    "LINK_SECONDS",
    "MAX_SEALED",
    "SignInError",
    "SignInLinks",
    "State",
    "Ticket",
]

#: How long a sign-in link, and the sign-in it starts, stay valid.
LINK_SECONDS = 600
#: The longest ticket or state accepted (both are well under 1 KiB when sealed here).
MAX_SEALED = 4096

#: `State.kind` of the gateway's own sign-in.
GATEWAY = "gateway"

_TICKET_INFO = b"mcp-agg sign-in ticket v1"
_STATE_INFO = b"mcp-agg sign-in state v1"


class SignInError(GatewayError):
    """A sign-in link or callback that cannot be honoured; the message says why, and
    holds no token, code or ticket."""


@dataclass(frozen=True, slots=True)
class Ticket:
    """Who a sign-in link is for: a user, and the server (name and url) to sign in to."""

    user: str
    server: str
    url: str


@dataclass(frozen=True, slots=True)
class State:
    """What the callback needs to finish a sign-in, carried by the authorization server."""

    user: str
    server: str
    url: str
    #: The PKCE verifier of the authorization request.
    verifier: str
    #: The issuer the code must come from (RFC 9207), as discovered at the start.
    issuer: str
    #: A random value of this sign-in, so that two states never look alike.
    nonce: str
    #: Whose sign-in this is: `user` (a `per_user` caller's, under `user`), or `gateway`
    #: (the gateway's own, as `mcp-agg login` keeps it, started from the console).
    kind: str = "user"


class SignInLinks:
    """Seals and opens tickets and states; makes the links users follow."""

    def __init__(self, token_key: str, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")
        self._tickets = fernet_for(token_key, _TICKET_INFO)
        self._states = fernet_for(token_key, _STATE_INFO)

    @property
    def callback_url(self) -> str:
        """The redirect URI registered at every backend's authorization server."""
        return f"{self.public_url}/oauth/callback"

    def link(self, ticket: Ticket) -> str:
        sealed = self._tickets.encrypt(json.dumps(asdict(ticket)).encode()).decode("ascii")
        return f"{self.public_url}/oauth/authorize?{urlencode({'ticket': sealed})}"

    def open_ticket(self, sealed: str) -> Ticket:
        data = _open(self._tickets, sealed, "sign-in link")
        try:
            return Ticket(**data)
        except TypeError:
            raise SignInError("the sign-in link is not one of this gateway's") from None

    def seal_state(self, state: State) -> str:
        return self._states.encrypt(json.dumps(asdict(state)).encode()).decode("ascii")

    def open_state(self, sealed: str) -> State:
        data = _open(self._states, sealed, "sign-in")
        try:
            state = State(**data)
        except TypeError:
            raise SignInError("the sign-in's state is not one of this gateway's") from None
        if state.kind not in ("user", GATEWAY):
            raise SignInError("the sign-in's state is not one of this gateway's")
        return state


def _open(fernet: Fernet, sealed: str, what: str) -> dict[str, str]:
    """The fields of a sealed value, checked for its age; `SignInError` otherwise."""
    if len(sealed) > MAX_SEALED:
        raise SignInError(f"the {what} is too long to be one of this gateway's")
    try:
        # Checked, then its age: an altered value has no age to speak of.
        sealed_at = fernet.extract_timestamp(sealed.encode("ascii"))
        text = fernet.decrypt(sealed.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise SignInError(f"the {what} was altered, or is not one of this gateway's") from None
    if time.time() - sealed_at > LINK_SECONDS:
        raise SignInError(
            f"the {what} has expired (after {LINK_SECONDS // 60} minutes): "
            "call the tool again for a new link"
        )
    data = json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SignInError(f"the {what} is not one of this gateway's")
    return data
