"""A user's sign-in to a `per_user` backend through the gateway's HTTP front: the start
(`/oauth/authorize`, a redirect to the backend's authorization server) and the end
(`/oauth/callback`, the code exchanged and the tokens kept for that user). The gateway's
own sign-in to a backend (what `mcp-agg login` does) started from the web console takes
the same two steps; its state says so, and its tokens go where `login` keeps them.

The SDK's `OAuthClientProvider` runs a whole authorization inside one coroutine (its
redirect and callback handlers are awaited back to back), so its flow cannot start on
one replica and end on another, nor wait for a browser without holding a request open.
The steps are the SDK's own pieces, called in the same order as its `_auth_flow`:
discovery from the backend's 401 (RFC 9728, then RFC 8414 / OpenID), the issuer checks,
scope selection, dynamic registration (RFC 7591) unless a `client_id` is configured,
PKCE (S256), `resource` (RFC 8707), the token request's client authentication, and the
`iss` check (RFC 9207). What the callback needs comes back sealed in `state`
(links.py); the authorization server's metadata is discovered again there.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode, urljoin, urlparse

import httpx2
from mcp.client.auth import OAuthFlowError, OAuthTokenError, PKCEParameters
from mcp.client.auth.oauth2 import OAuthContext, check_registration_usable
from mcp.client.auth.utils import (
    build_oauth_authorization_server_metadata_discovery_urls,
    build_protected_resource_metadata_discovery_urls,
    create_client_registration_request,
    create_oauth_metadata_request,
    credentials_match_issuer,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    get_client_metadata_scopes,
    handle_auth_metadata_response,
    handle_protected_resource_response,
    handle_registration_response,
    handle_token_response_scopes,
    issuers_match,
    union_scopes,
    validate_authorization_response_iss,
    validate_metadata_issuer,
)
from mcp.shared.auth import (
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    ProtectedResourceMetadata,
)
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url
from mcp_types import LATEST_PROTOCOL_VERSION
from pydantic import AnyUrl

from mcp_agg.backend.oauth.links import (
    GATEWAY,
    LINK_SECONDS,
    SignInError,
    SignInLinks,
    State,
    Ticket,
)
from mcp_agg.backend.oauth.peruser import UserTokens
from mcp_agg.backend.oauth.provider import configured_client

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.storage import RecordTokenStorage
    from mcp_agg.config import ServerConfig

__all__ = ["OwnSignIns", "UsedStates", "WebSignIn"]

logger = logging.getLogger(__name__)

#: One request to a backend or its authorization server during a sign-in.
_HTTP_TIMEOUT = httpx2.Timeout(10.0)
#: The protocol version the discovery request says it speaks (the `resource` parameter
#: is sent from 2025-06-18 on, as the SDK does).
_DISCOVERY_VERSION = LATEST_PROTOCOL_VERSION


class UsedStates(Protocol):
    """Where a used `state` is remembered (the store's revocations), so a callback is
    honoured once, on whichever replica it lands."""

    async def revoke(self, key: str, ttl: float) -> bool: ...


class OwnSignIns(Protocol):
    """The gateway's own sign-ins (`mcp-agg login`'s), for one started from the console."""

    def storage(self, server: str) -> RecordTokenStorage | None:
        """Where `server`'s sign-in is kept; None: no server with OAuth of that name."""
        ...

    def signed_in(self, server: str) -> None:
        """`server` has tokens now: its replicas may connect at once."""
        ...


@dataclass(frozen=True, slots=True)
class _Discovered:
    prm: ProtectedResourceMetadata | None
    asm: OAuthMetadata | None
    #: The authorization server the backend named (None: the legacy path, its origin).
    auth_server_url: str | None
    #: The issuer the metadata and the code must come from.
    issuer: str
    #: The scope the backend's 401 asked for, if it did.
    challenged_scope: str | None


class WebSignIn:
    """The two steps of a browser sign-in, stateless across replicas."""

    def __init__(
        self,
        links: SignInLinks,
        tokens: UserTokens,
        used: UsedStates,
        servers: Callable[[str], ServerConfig | None],
        own: OwnSignIns | None = None,
    ) -> None:
        self.links = links
        self.tokens = tokens
        self.used = used
        self._servers = servers
        self._own = own
        #: Told the server's name when the gateway's own sign-in to it completes (the
        #: console forgets the sign-in state it keeps between polls).
        self.completed: list[Callable[[str], None]] = []

    async def authorize(self, sealed_ticket: str) -> str:
        """The authorization URL to send the browser to."""
        return await self._authorize(self.links.open_ticket(sealed_ticket), "user")

    async def authorize_gateway(self, name: str) -> str:
        """The authorization URL of the gateway's own sign-in to server `name` (an admin's,
        from the console: no ticket, the console's own auth stands for it)."""
        server = self._servers(name)
        if server is None or server.auth is None or server.url is None:
            raise SignInError(f'server {name!r} has no auth = {{ type = "oauth" }}')
        return await self._authorize(Ticket("", name, server.url), GATEWAY)

    async def _authorize(self, ticket: Ticket, kind: str) -> str:
        server = self._server(ticket.server, ticket.url, kind)
        storage = self._storage(ticket, kind)
        async with _client() as http:
            found = await _discover(http, ticket.url)
            context = self._context(ticket, server, storage, found)
            # The scopes a backend refused this user's token for (403 insufficient_scope)
            # are asked for beside the chosen ones.
            required = await storage.required_scope()
            context.client_metadata.scope = union_scopes(context.client_metadata.scope, required)
            context.client_info = await self._client_info(http, server, storage, context, found)
        pkce = PKCEParameters.generate()
        state = State(
            user=ticket.user,
            server=ticket.server,
            url=ticket.url,
            verifier=pkce.code_verifier,
            issuer=found.issuer,
            nonce=secrets.token_urlsafe(16),
            kind=kind,
        )
        params = {
            "response_type": "code",
            "client_id": context.client_info.client_id,
            "redirect_uri": self.links.callback_url,
            "state": self.links.seal_state(state),
            "code_challenge": pkce.code_challenge,
            "code_challenge_method": "S256",
        }
        if context.should_include_resource_param(_DISCOVERY_VERSION):
            params["resource"] = context.get_resource_url()  # RFC 8707
        if context.client_metadata.scope:
            params["scope"] = context.client_metadata.scope
        endpoint = _endpoint(found.asm, "authorization_endpoint", ticket.url, "/authorize")
        return f"{endpoint}?{urlencode(params)}"

    async def callback(self, code: str, sealed_state: str, iss: str | None) -> str:
        """Finish a sign-in: the tokens kept for the user; the server's name."""
        state = self.links.open_state(sealed_state)
        # Single use, on any replica: the state's own nonce is its key.
        used = f"signin-state:{state.nonce}"
        if not await self.used.revoke(used, LINK_SECONDS):
            raise SignInError("this sign-in was already completed: call the tool again")
        server = self._server(state.server, state.url, state.kind)
        ticket = Ticket(state.user, state.server, state.url)
        storage = self._storage(ticket, state.kind)
        try:
            async with _client() as http:
                found = await _discover(http, state.url)
                if not issuers_match(found.issuer, state.issuer):
                    raise SignInError(
                        "the backend's authorization server changed during the sign-in: "
                        "call the tool again"
                    )
                validate_authorization_response_iss(iss, found.asm)  # RFC 9207
                context = self._context(ticket, server, storage, found)
                context.client_info = await self._client_info(http, server, storage, context, found)
                data = {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.links.callback_url,
                    "client_id": context.client_info.client_id,
                    "code_verifier": state.verifier,
                }
                if context.should_include_resource_param(_DISCOVERY_VERSION):
                    data["resource"] = context.get_resource_url()
                data, headers = context.prepare_token_auth(
                    data, {"Content-Type": "application/x-www-form-urlencoded"}
                )
                url = _endpoint(found.asm, "token_endpoint", state.url, "/token")
                response = await http.post(url, data=data, headers=headers)
                if response.status_code not in (200, 201):
                    # Not the body: an authorization server may echo the code.
                    raise SignInError(
                        f"the authorization server refused the code (HTTP {response.status_code})"
                    )
                tokens = await handle_token_response_scopes(response)
        except (OAuthFlowError, OAuthTokenError) as exc:
            raise SignInError(f"the sign-in to {state.server} failed: {exc}") from None
        except httpx2.HTTPError as exc:
            raise SignInError(
                f"the sign-in to {state.server} failed: {type(exc).__name__} reaching the "
                "backend or its authorization server"
            ) from None
        await storage.set_tokens(tokens)
        if state.kind == GATEWAY:
            logger.info("the gateway signed in to %s (started from the console)", state.server)
            if self._own is not None:
                self._own.signed_in(state.server)
            for told in self.completed:
                told(state.server)
        else:
            logger.info("user signed in to %s", state.server)  # not who: personal data
        return state.server

    def _server(self, name: str, url: str, kind: str) -> ServerConfig:
        """The server of a ticket or state, as long as it still takes this kind of
        sign-in (a user's: `per_user`; the gateway's: any `auth`) at the same url."""
        server = self._servers(name)
        auth = server.auth if server is not None else None
        takes = auth is not None and (kind == GATEWAY or auth.per_user)
        if server is not None and server.url == url and takes:
            return server
        which = "OAuth" if kind == GATEWAY else "per-user"
        raise SignInError(f"server {name!r} no longer takes {which} sign-ins at that url")

    def _storage(self, ticket: Ticket, kind: str) -> RecordTokenStorage:
        """Where the sign-in's tokens go: the user's token set, or the gateway's own."""
        if kind != GATEWAY:
            return self.tokens.storage(ticket.user, ticket.server, ticket.url)
        storage = self._own.storage(ticket.server) if self._own is not None else None
        if storage is None:
            raise SignInError(f"the gateway cannot keep a sign-in to {ticket.server!r} here")
        return storage

    def _context(
        self,
        ticket: Ticket,
        server: ServerConfig,
        storage: RecordTokenStorage,
        found: _Discovered,
    ) -> OAuthContext:
        """The SDK's flow context, for its resource, scope and client-auth rules."""
        config = server.auth
        assert config is not None
        secret = config.client_secret
        scope = " ".join(config.scopes) or get_client_metadata_scopes(
            found.challenged_scope, found.prm, found.asm, ["authorization_code", "refresh_token"]
        )
        metadata = OAuthClientMetadata(
            client_name="mcp-agg",
            redirect_uris=[AnyUrl(self.links.callback_url)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            scope=scope,
        )
        context = OAuthContext(
            server_url=ticket.url,
            client_metadata=metadata,
            storage=storage,
            redirect_handler=None,
            callback_handler=None,
        )
        context.protected_resource_metadata = found.prm
        context.oauth_metadata = found.asm
        context.auth_server_url = found.auth_server_url
        return context

    async def _client_info(
        self,
        http: httpx2.AsyncClient,
        server: ServerConfig,
        storage: RecordTokenStorage,
        context: OAuthContext,
        found: _Discovered,
    ) -> OAuthClientInformationFull:
        """The configured client, else the server's registration (shared by its
        users), made now if there is none for this issuer and callback."""
        config = server.auth
        assert config is not None
        metadata = context.client_metadata
        if config.client_id is not None:
            return configured_client(config.client_id, config.client_secret, metadata)
        stored = await storage.get_client_info()
        if (
            stored is not None
            and credentials_match_issuer(stored, found.issuer, None)
            and self.links.callback_url in [str(u) for u in stored.redirect_uris or []]
        ):
            return stored
        base = context.get_authorization_base_url(found.auth_server_url or context.server_url)
        response = await http.send(create_client_registration_request(found.asm, metadata, base))
        registered = await handle_registration_response(response)
        check_registration_usable(registered)
        if found.asm is not None:
            registered.issuer = found.issuer
        await storage.set_client_info(registered)
        return registered


def _client() -> httpx2.AsyncClient:
    # Redirects are not followed: discovery treats them as "not here", as the SDK does.
    return httpx2.AsyncClient(timeout=_HTTP_TIMEOUT, follow_redirects=False)


def _endpoint(asm: OAuthMetadata | None, name: str, server_url: str, fallback: str) -> str:
    """An authorization-server endpoint from its metadata, else the SDK's legacy default
    (the path on the backend's origin)."""
    value = getattr(asm, name, None) if asm is not None else None
    if value is not None:
        return str(value)
    parsed = urlparse(server_url)
    return urljoin(f"{parsed.scheme}://{parsed.netloc}", fallback)


async def _discover(http: httpx2.AsyncClient, server_url: str) -> _Discovered:
    """The backend's protected-resource metadata and its authorization server's metadata,
    as the SDK's `_auth_flow` finds them (steps 1 and 2)."""
    try:
        challenge = await http.post(
            server_url,
            json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
            headers={
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": _DISCOVERY_VERSION,
            },
        )
    except httpx2.HTTPError as exc:
        raise SignInError(f"cannot reach the backend: {type(exc).__name__}") from None
    www_metadata = None
    scope = None
    if challenge.status_code == 401:
        www_metadata = extract_resource_metadata_from_www_auth(challenge)
        scope = extract_scope_from_www_auth(challenge)
    prm = None
    for url in build_protected_resource_metadata_discovery_urls(www_metadata, server_url):
        prm = await handle_protected_resource_response(
            await http.send(create_oauth_metadata_request(url))
        )
        if prm is not None:
            break
    auth_server_url = None
    if prm is not None:
        resource = str(prm.resource) if prm.resource else None
        expected = resource_url_from_server_url(server_url)
        if resource is not None and not check_resource_allowed(expected, resource):
            raise SignInError(f"the backend's metadata names another resource: {resource}")
        auth_server_url = str(prm.authorization_servers[0])
    parsed = urlparse(server_url)
    issuer = auth_server_url or f"{parsed.scheme}://{parsed.netloc}"
    asm = None
    for url in build_oauth_authorization_server_metadata_discovery_urls(
        auth_server_url, server_url
    ):
        ok, found = await handle_auth_metadata_response(
            await http.send(create_oauth_metadata_request(url))
        )
        if not ok:
            break
        if found is not None:
            if auth_server_url is None and issuers_match(str(found.issuer), issuer):
                issuer = str(found.issuer)
            try:
                validate_metadata_issuer(found, issuer)
            except OAuthFlowError as exc:
                raise SignInError(str(exc)) from None
            asm = found
            break
    if asm is not None:
        issuer = str(asm.issuer)
    return _Discovered(prm, asm, auth_server_url, issuer, scope)
