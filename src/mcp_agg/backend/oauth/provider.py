"""The httpx auth of an HTTP backend with `auth = { type = "oauth" }`: the SDK's
`OAuthClientProvider`, over the gateway's token storage.

The SDK does the protocol: discovery from the backend's 401 (RFC 9728, then RFC 8414 /
OpenID metadata), Client ID Metadata Documents, dynamic registration (RFC 7591), PKCE
(S256), the `resource` parameter (RFC 8707), the `iss` check (RFC 9207), refresh before
expiry, and step-up on `403 insufficient_scope`. What is replaced, and why:

- The SDK's `_initialize` loads tokens without their expiry, so a token read back after a
  restart would be sent until a 401; here the stored absolute expiry is restored (as
  FastMCP's `OAuth` does), so it is refreshed before it expires.
- The SDK counts a token valid up to its last second, and on a `401` starts a whole new
  authorization rather than a refresh. A token is treated here as expiring `_EARLY`
  before it does (an authorization server may round its expiry down), so it is refreshed
  before the backend refuses it; and a `401` on a request that carried a token (one
  revoked, or expired early) is answered with a refresh and the request sent once more
  (`_auth_flow`), so a live session outlives it. Only when that refresh is refused does a
  running gateway fail the session with the login message (`NotSignedIn`), without the
  SDK's discovery and registration for an authorization nobody would complete.
- The SDK keeps its tokens in memory once read, but a gateway has several sessions per
  sign-in (replicas, per-client sessions, the change stream), each with a provider of its
  own over the one storage: where another has refreshed first (and the authorization
  server rotated the refresh token, revoking the one held here), the stored tokens are
  taken up instead of refreshing again (`_adopt_stored`).
- On `403 insufficient_scope` the SDK starts a new authorization for more scopes (SEP-2350
  step-up), which a running gateway cannot complete (its redirect handler refuses, and
  the exception closes the whole session with only "Connection closed" to show). Here
  the call that met it fails, with the scope the backend asked for and the login command
  as its error (logged too), the session and the backend's other tools stay up, and the
  scope is kept with the sign-in, so that `mcp-agg login` asks for it.
- The SDK asks for the scopes of the backend's challenge (or its metadata) in place of
  the configured ones: here the configured `scopes` win where set, and every scope a
  `403` asked for is added (`_perform_authorization`).
- A configured `client_id` (an authorization server without registration, such as
  GitHub's) is used as is, instead of a registration of our own.
- Where the authorization happens is a `SignInFlow`: a person at `mcp-agg login`
  (signin.py), a headless client that follows the redirect itself (the conformance
  client), or none at all in a running gateway, which never waits for a browser: a
  backend whose sign-in is missing or no longer refreshable fails to connect with the
  command that fixes it (`NotSignedIn`). FastMCP's `OAuth` always opens a browser from
  whatever process needs the token, which a gateway on stdio must not do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Protocol

import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.utils import (
    extract_field_from_www_auth,
    extract_scope_from_www_auth,
    union_scopes,
)
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata
from mcp_types import INTERNAL_ERROR
from pydantic import AnyUrl

from mcp_agg.backend.oauth.storage import RecordTokenStorage, VaultTokenStorage
from mcp_agg.backend.oauth.vault import default_vault
from mcp_agg.errors import UpstreamConnectError

if TYPE_CHECKING:
    from mcp_agg.config import ReplicaSpec
    from mcp_agg.config.backendauth import BackendOAuthConfig

__all__ = [
    "BackendOAuth",
    "NotSignedIn",
    "SignInFlow",
    "configured_client",
    "login_command",
    "oauth_for",
    "require_sign_in",
    "storage_for",
]

logger = logging.getLogger(__name__)

#: How long before its expiry a token is refreshed: at most 30 s, and at most half its life.
_EARLY = 30.0

#: The redirect URI registered when no sign-in flow is at hand (a running gateway never
#: authorizes; the SDK only needs one to build its registration request).
_UNUSED_REDIRECT = "http://127.0.0.1/callback"


def login_command(server: str) -> str:
    return f"mcp-agg login {server}"


class NotSignedIn(UpstreamConnectError):
    """A backend needs a sign-in the user has not done, or that can no longer be refreshed,
    or one with more scopes (`scope`: those the backend asked for)."""

    def __init__(self, server: str, replica: str, scope: str | None = None) -> None:
        reason = (
            "not signed in"
            if scope is None
            else f"the server asks for scope `{scope}`"
            if scope
            else "the server asks for more scopes"
        )
        super().__init__(f"{reason}: run `{login_command(server)}`", replica=replica)


class SignInFlow(Protocol):
    """Where the user authorizes: the SDK's redirect and callback handlers, and the
    redirect URI they receive the code at."""

    @property
    def redirect_uri(self) -> str: ...

    async def redirect(self, authorization_url: str) -> None: ...

    async def callback(self) -> AuthorizationCodeResult: ...


class BackendOAuth(OAuthClientProvider):
    """The SDK's OAuth provider for one backend, over the gateway's storage."""

    def __init__(
        self,
        *,
        server: str,
        replica: str,
        url: str,
        config: BackendOAuthConfig,
        storage: RecordTokenStorage,
        flow: SignInFlow | None = None,
        signed_out: Callable[[], Exception] | None = None,
    ) -> None:
        self.server = server
        self.replica = replica
        #: What a sign-in that is missing (or no longer refreshable) is raised as.
        self._signed_out = signed_out or (lambda: NotSignedIn(server, replica))
        #: A team user's session (`per_user`): signed out through their link, not
        #: `mcp-agg login`.
        self._per_user = signed_out is not None
        self.config = config
        self.storage = storage
        self.sign_in_flow = flow
        redirect_uri = _UNUSED_REDIRECT if flow is None else flow.redirect_uri
        secret = config.client_secret
        metadata = OAuthClientMetadata(
            client_name="mcp-agg",
            redirect_uris=[AnyUrl(redirect_uri)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            # Basic for a configured secret: the one method RFC 6749 (2.3.1) makes every
            # authorization server support.
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            scope=" ".join(config.scopes) or None,
        )
        super().__init__(
            server_url=url,
            client_metadata=metadata,
            storage=storage,
            client_metadata_url=config.client_metadata_url,
            # Both handlers given in a running gateway too: the SDK checks that both exist
            # before it calls the first, and would fail with a message about handlers.
            redirect_handler=self._refuse if flow is None else flow.redirect,
            callback_handler=self._never if flow is None else flow.callback,
        )

    async def _initialize(self) -> None:
        await super()._initialize()
        if self.context.current_tokens is not None:
            await self._restore_expiry()
        if self.config.client_id is not None:
            # An operator's client: never replaced by a registration of our own.
            self.context.client_info = configured_client(
                self.config.client_id, self.config.client_secret, self.context.client_metadata
            )

    async def _auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """The SDK's flow, with a `401` on `request` answered by a refresh first.

        The SDK's generator is driven as is (it holds the context's lock throughout, so a
        refresh here is never raced by another request's); only the answer to `request`
        itself is looked at. When it is a `401`, `request` is sent once more with the
        tokens another session has stored since, else with refreshed ones where a refresh
        token is kept. A `401` still (or a
        refused refresh) goes on to the SDK, which authorizes afresh where a person or a
        headless client can (`mcp-agg login`, the conformance client); a running gateway
        cannot, and fails the session with the login command at once.
        """
        if self._initialized and not self.context.is_token_valid():
            await self._adopt_stored()  # before the SDK refreshes with a rotated token
        flow = super()._auth_flow(request)
        retried = False
        try:
            outgoing = await anext(flow)
            while True:
                response = yield outgoing
                if outgoing is request and response.status_code == 401 and not retried:
                    retried = True
                    if await self._adopt_stored():
                        self._add_auth_header(request)
                        response = yield request
                    elif self.context.can_refresh_token():
                        refreshed = yield await self._refresh_token()
                        if await self._handle_refresh_response(refreshed):
                            self._add_auth_header(request)
                            response = yield request
                    if response.status_code == 401 and self.sign_in_flow is None:
                        if self._per_user:
                            # Useless now: forgotten, so the call is answered with the
                            # user's link (backend/requests.py) and they sign in again.
                            await self.storage.forget_tokens()
                        raise self._signed_out()
                if outgoing is request and _insufficient_scope(response):
                    scope = extract_scope_from_www_auth(response)
                    if scope:
                        await self.storage.require_scope(scope)
                    if self.sign_in_flow is None:
                        if self._per_user:
                            # A team's user signs in again through their link, which asks
                            # for the scope kept above (the call is answered with it).
                            await self.storage.forget_tokens()
                            raise self._signed_out()
                        problem = NotSignedIn(self.server, self.replica, scope or "")
                        logger.warning("backend %s: %s", self.replica, problem)
                        _answer_with(response, request, str(problem))
                        return  # the 403, as this request's answer: no step-up
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            return
        finally:
            await flow.aclose()

    async def _adopt_stored(self) -> bool:
        """Take up the stored tokens where another session has replaced the ones held
        here (it refreshed first); whether it had."""
        stored = await self.storage.get_tokens()
        held = self.context.current_tokens
        if stored is None or held is None or stored.access_token == held.access_token:
            return False
        self.context.current_tokens = stored
        await self._restore_expiry()
        return True

    async def _restore_expiry(self) -> None:
        """The stored expiry of the tokens just read back, moved `_EARLY` forward."""
        expiry = await self.storage.expiry()
        self.context.token_expiry_time = None if expiry is None else expiry.at
        self._refresh_early(None if expiry is None else expiry.life)

    async def _perform_authorization(self) -> httpx2.Request:
        """The SDK's, asking for the configured scopes (else the SDK's choice) and every
        scope a `403 insufficient_scope` asked for."""
        chosen = " ".join(self.config.scopes) or self.context.client_metadata.scope
        required = await self.storage.required_scope()
        self.context.client_metadata.scope = union_scopes(chosen, required)
        return await super()._perform_authorization()

    async def _handle_token_response(self, response: httpx2.Response) -> None:
        await super()._handle_token_response(response)
        self._refresh_early(self._issued_life())

    async def _handle_refresh_response(self, response: httpx2.Response) -> bool:
        refreshed = await super()._handle_refresh_response(response)
        self._refresh_early(self._issued_life())
        return refreshed

    def _issued_life(self) -> float | None:
        """The life of tokens just issued (not read back: those say only what is left)."""
        tokens = self.context.current_tokens
        return None if tokens is None else tokens.expires_in

    def _refresh_early(self, life: float | None) -> None:
        """Move the in-memory expiry `_EARLY` forward, by at most half the token's `life`
        as issued (the stored expiry stays exact).

        Half of what is *left* would shrink the margin to nothing as the token ages: one
        read back in its last second was sent, and an authorization server that rounds its
        own expiry down (FastMCP's keeps whole seconds) refused it, and revoked the
        refresh token with it, so the sign-in was lost.
        """
        expiry = self.context.token_expiry_time
        if expiry is None or life is None:
            return
        self.context.token_expiry_time = expiry - min(_EARLY, max(life, 0) / 2)

    async def _refuse(self, authorization_url: str) -> None:
        """A running gateway does not authorize: the user signs in with `mcp-agg login`
        (or, on a `per_user` server, with the link the gateway hands them)."""
        raise self._signed_out()

    async def _never(self) -> AuthorizationCodeResult:
        raise self._signed_out()  # `_refuse` has raised already


def configured_client(
    client_id: str, secret: str | None, metadata: OAuthClientMetadata
) -> OAuthClientInformationFull:
    """An operator's client (`client_id`, an authorization server without registration,
    such as GitHub's), as the SDK holds a registration: used as is, never replaced."""
    return OAuthClientInformationFull(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method=metadata.token_endpoint_auth_method,
        redirect_uris=metadata.redirect_uris,
        grant_types=metadata.grant_types,
        scope=metadata.scope,
    )


def _insufficient_scope(response: httpx2.Response) -> bool:
    return (
        response.status_code == 403
        and extract_field_from_www_auth(response, "error") == "insufficient_scope"
    )


def _answer_with(response: httpx2.Response, request: httpx2.Request, message: str) -> None:
    """Make `response` (an error status, its body read) a JSON-RPC error answering
    `request` with `message`: the SDK's transport hands such a body to the waiting call
    (else it says only "Server returned an error response"). An httpx auth flow cannot
    substitute the response it ends with, so the body is replaced in place."""
    try:
        request_id = json.loads(request.content)["id"]
    except (ValueError, KeyError, TypeError):
        return  # not a JSON-RPC request: the status says enough
    error = {"code": INTERNAL_ERROR, "message": message}
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(body))
    response._content = body


def storage_for(spec: ReplicaSpec) -> VaultTokenStorage:
    """Where `spec`'s server's sign-in is kept (one for all its replicas)."""
    url = spec.server.url
    assert url is not None  # `auth` is refused on a server without one
    return VaultTokenStorage(default_vault(spec.token_key), spec.group, url)


def oauth_for(spec: ReplicaSpec, flow: SignInFlow | None = None) -> BackendOAuth:
    """The auth of `spec`'s HTTP client; `flow` None: a running gateway's, which never
    authorizes."""
    config, url = spec.server.auth, spec.server.url
    assert config is not None
    assert url is not None
    return BackendOAuth(
        server=spec.group,
        replica=spec.id,
        url=url,
        config=config,
        storage=storage_for(spec),
        flow=flow,
    )


async def require_sign_in(spec: ReplicaSpec) -> None:
    """Fail before any request when the user has not signed in to `spec`'s server: the
    SDK would otherwise start an authorization (and a registration) nobody completes."""
    if (await storage_for(spec).get_tokens()) is None:
        raise NotSignedIn(spec.group, spec.id)
