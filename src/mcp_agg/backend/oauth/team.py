"""A team gateway's sign-ins (`per_user = true`): whose tokens a per-client session
carries, and what a caller who has not signed in yet is told.

A per-client session of a `per_user` server carries its user's token set, through the
SDK's provider (provider.py) over that user's storage, with no sign-in flow: it
refreshes, never authorizes. A user without a token set gets a link to the gateway's
`/oauth/authorize` (links.py, webflow.py, front/signin.py) instead. The replica's own
session (catalog, health probes) keeps the operator's sign-in (`mcp-agg login`): a
user's token never reaches a shared session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp_agg.config.gateway import public_url_of
from mcp_agg.errors import RefusedError, UpstreamConnectError

if TYPE_CHECKING:
    # Imported where a team signs in (`team_sign_in`), a link is made or a user's
    # session opens: its token sets' SQLite file, key ring, sealed links (cryptography's
    # Fernet) and the SDK's OAuth client cost every gateway memory, and most have no
    # `per_user` server. The exceptions here are on every call's path, and light.
    from mcp_agg.backend.oauth.links import SignInLinks
    from mcp_agg.backend.oauth.peruser import SecretArea, UserTokens, UserTokenStorage
    from mcp_agg.backend.oauth.provider import BackendOAuth
    from mcp_agg.config import GatewayConfig, ReplicaSpec

__all__ = [
    "SignInRequired",
    "TeamSignIn",
    "UserNotSignedIn",
    "UserSignIn",
    "not_signed_in",
    "team_sign_in",
]


class UserNotSignedIn(UpstreamConnectError):
    """A caller has no token set for a `per_user` server (or one that can no longer be
    refreshed): the session cannot open until they sign in at `link`."""

    def __init__(self, server: str, replica: str, link: str, storage: UserTokenStorage) -> None:
        # The link is not in the message: it is a sign-in for its user, and messages
        # reach logs.
        super().__init__(f"the caller has not signed in to {server}", replica=replica)
        self.server = server
        self.link = link
        self.storage = storage


def not_signed_in(exc: BaseException | None) -> UserNotSignedIn | None:
    """The `UserNotSignedIn` behind a failure to open a session, if that is what it was:
    raised by the SDK's auth flow, it may reach us wrapped (a cause, an exception group)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, UserNotSignedIn):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending += [current.__cause__, current.__context__]
    return None


class SignInRequired(RefusedError):
    """What a caller who has not signed in is answered: the link, and what to do. Its
    text goes to that caller only; what is logged is `logged`."""

    def __init__(self, server: str, link: str, why: str = "") -> None:
        from mcp_agg.backend.oauth.links import LINK_SECONDS

        self.server = server
        self.link = link
        super().__init__(
            f"Sign in to {server} first{why}: open {link} in a browser "
            f"(valid for {LINK_SECONDS // 60} minutes), then call again."
        )

    @property
    def logged(self) -> str:
        return f"the caller has not signed in to {self.server}; sent a sign-in link"


@dataclass(frozen=True, slots=True)
class TeamSignIn:
    """Where a gateway's users' token sets are, and how their sign-in links are made."""

    tokens: UserTokens
    links: SignInLinks


def team_sign_in(gateway: GatewayConfig, store: SecretArea) -> TeamSignIn | None:
    """The gateway's per-user sign-ins: token sets in `store` when `[gateway.store]` is
    set (every replica sees them), else in the local SQLite file; None without
    `token_key` or a public URL (no `per_user` server passes the config check then)."""
    public_url = public_url_of(gateway)
    if gateway.token_key is None or public_url is None:
        return None
    from mcp_agg.backend.oauth.links import SignInLinks
    from mcp_agg.backend.oauth.peruser import UserTokens

    if gateway.store is not None:
        tokens = UserTokens(store, gateway.token_key, "the store ([gateway.store])")
    else:
        tokens = UserTokens.local(gateway.token_key)
    return TeamSignIn(tokens, SignInLinks(gateway.token_key, public_url))


@dataclass(frozen=True, slots=True)
class UserSignIn:
    """One caller of a `per_user` server: their user key, and the team's sign-ins."""

    user: str
    team: TeamSignIn

    def storage(self, spec: ReplicaSpec) -> UserTokenStorage:
        url = spec.server.url
        assert url is not None
        return self.team.tokens.storage(self.user, spec.group, url)

    def missing(self, spec: ReplicaSpec) -> UserNotSignedIn:
        url = spec.server.url
        assert url is not None
        from mcp_agg.backend.oauth.links import Ticket

        link = self.team.links.link(Ticket(self.user, spec.group, url))
        return UserNotSignedIn(spec.group, spec.id, link, self.storage(spec))

    async def auth(self, spec: ReplicaSpec) -> BackendOAuth:
        """The HTTP auth of the user's session; `UserNotSignedIn` without a token set."""
        config, url = spec.server.auth, spec.server.url
        assert config is not None
        assert url is not None
        storage = self.storage(spec)
        if (await storage.get_tokens()) is None:
            raise self.missing(spec)
        from mcp_agg.backend.oauth.provider import BackendOAuth

        return BackendOAuth(
            server=spec.group,
            replica=spec.id,
            url=url,
            config=config,
            storage=storage,
            signed_out=lambda: self.missing(spec),
        )
