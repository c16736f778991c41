"""The SDK's OAuth provider as the gateway builds it: stored expiry restored, an operator's
client used as is, no authorization in a running gateway, and a 401 on a live session
answered with a refresh."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import httpx2
import pytest
from mcp.shared.auth import OAuthToken

from mcp_agg.backend.oauth import storage as storage_module
from mcp_agg.backend.oauth.provider import BackendOAuth, NotSignedIn
from mcp_agg.backend.oauth.storage import VaultTokenStorage
from mcp_agg.backend.oauth.vault import FileVault
from mcp_agg.config.backendauth import BackendOAuthConfig

URL = "https://h/mcp"


def provider(tmp_path: Path, config: BackendOAuthConfig) -> BackendOAuth:
    storage = VaultTokenStorage(FileVault(tmp_path / "tokens.json"), "s", URL)
    return BackendOAuth(server="s", replica="s-1", url=URL, config=config, storage=storage)


async def test_a_stored_token_keeps_its_expiry(tmp_path: Path) -> None:
    oauth = provider(tmp_path, BackendOAuthConfig(type="oauth"))
    await oauth.storage.set_tokens(OAuthToken(access_token="at", expires_in=600))
    await oauth._initialize()
    expiry = oauth.context.token_expiry_time
    assert expiry is not None
    # Refreshed 30 s early: an authorization server may round its expiry down.
    assert time.time() + 560 < expiry <= time.time() + 570


@pytest.mark.parametrize(
    ("life", "left", "sent"),
    [
        (4, 3.0, True),  # refreshed 2 s (half its life) early
        (4, 0.8, False),  # its last second: an authorization server may have ended it
        (60, 40.0, True),
        (60, 20.0, False),  # 30 s early, though 20 s are left
        (600, 500.0, True),
    ],
)
async def test_a_stored_token_is_refreshed_early_by_its_life_as_issued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, life: int, left: float, sent: bool
) -> None:
    """How early is measured from the life the token was issued with, not from what is
    left of it, which shrinks the margin to nothing by its last second."""
    oauth = provider(tmp_path, BackendOAuthConfig(type="oauth"))
    issued = time.time() - (life - left)
    monkeypatch.setattr(storage_module, "time", SimpleNamespace(time=lambda: issued))
    await oauth.storage.set_tokens(OAuthToken(access_token="at", expires_in=life))
    monkeypatch.undo()
    await oauth._initialize()
    assert oauth.context.is_token_valid() is sent


async def test_a_configured_client_is_used_as_is(tmp_path: Path) -> None:
    config = BackendOAuthConfig(type="oauth", client_id="cid", client_secret="cs-123456")
    oauth = provider(tmp_path, config)
    await oauth._initialize()
    client = oauth.context.client_info
    assert client is not None
    assert (client.client_id, client.client_secret) == ("cid", "cs-123456")
    assert client.token_endpoint_auth_method == "client_secret_basic"


async def test_a_running_gateway_never_authorizes(tmp_path: Path) -> None:
    config = BackendOAuthConfig(type="oauth", scopes=["a", "b"], client_id="cid")
    oauth = provider(tmp_path, config)
    await oauth._initialize()
    assert oauth.context.client_metadata.scope == "a b"
    with pytest.raises(NotSignedIn, match="run `mcp-agg login s`"):
        await oauth._perform_authorization_code_grant()


# ------------------------------------------------------------- a 401 on a live session

CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def refresh_answer(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(
        200, json={"access_token": "at-new", "token_type": "Bearer", "refresh_token": "rt-2"}
    )


def refused(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(400, json={"error": "invalid_grant"})


def accept_new(request: httpx2.Request) -> httpx2.Response:
    ok = request.headers.get("Authorization") == "Bearer at-new"
    return httpx2.Response(200) if ok else httpx2.Response(401, headers=CHALLENGE)


def still_refused(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(401, headers=CHALLENGE)


Answer = Callable[[httpx2.Request], httpx2.Response]


@pytest.mark.parametrize(
    ("refresh_token", "token_endpoint", "backend", "sent", "ok"),
    [
        # Refreshed, and the request sent once more with the new token: no new session.
        ("rt-1", refresh_answer, accept_new, ["mcp at-old", "token", "mcp at-new"], True),
        # The refresh token is refused too: the login command, and no discovery.
        ("rt-1", refused, accept_new, ["mcp at-old", "token"], False),
        # A refreshed token refused all the same: once only, then the login command.
        ("rt-1", refresh_answer, still_refused, ["mcp at-old", "token", "mcp at-new"], False),
        # No refresh token kept: the login command at once.
        (None, refresh_answer, accept_new, ["mcp at-old"], False),
    ],
)
async def test_a_401_refreshes_once_then_asks_for_a_login(
    tmp_path: Path,
    refresh_token: str | None,
    token_endpoint: Answer,
    backend: Answer,
    sent: list[str],
    ok: bool,
) -> None:
    oauth = provider(tmp_path, BackendOAuthConfig(type="oauth", client_id="cid"))
    tokens = OAuthToken(access_token="at-old", refresh_token=refresh_token, expires_in=600)
    await oauth.storage.set_tokens(tokens)
    seen: list[str] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/token":
            seen.append("token")
            return token_endpoint(request)
        if request.url.path == "/mcp":
            seen.append("mcp " + request.headers.get("Authorization", "").removeprefix("Bearer "))
            return backend(request)
        seen.append(f"{request.method} {request.url.path}")
        return httpx2.Response(404)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle), auth=oauth) as http:
        if ok:
            answer = await http.post(URL, json={})
            assert answer.status_code == 200
            stored = await oauth.storage.get_tokens()
            assert stored is not None
            assert (stored.access_token, stored.refresh_token) == ("at-new", "rt-2")
        else:
            with pytest.raises(NotSignedIn, match="run `mcp-agg login s`"):
                await http.post(URL, json={})
    assert seen == sent


# ------------------------------------------------------------------ scope step-up


async def test_insufficient_scope_names_the_scope_and_the_login(tmp_path: Path) -> None:
    oauth = provider(tmp_path, BackendOAuthConfig(type="oauth", client_id="cid"))
    await oauth.storage.set_tokens(OAuthToken(access_token="at-old", refresh_token="rt-1"))
    seen: list[str] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(f"{request.method} {request.url.path}")
        challenge = 'Bearer error="insufficient_scope", scope="repo:write"'
        return httpx2.Response(403, headers={"WWW-Authenticate": challenge})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle), auth=oauth) as http:
        answer = await http.post(URL, json={"jsonrpc": "2.0", "id": 7, "method": "tools/call"})
    # The call's answer: a JSON-RPC error, which the SDK's transport hands to the caller.
    assert answer.status_code == 403
    assert answer.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {
            "code": -32603,
            "message": "the server asks for scope `repo:write`: run `mcp-agg login s`",
        },
    }
    assert seen == ["POST /mcp"]  # no discovery, no registration: no authorization started
    assert await oauth.storage.required_scope() == "repo:write"


@pytest.mark.parametrize(
    ("configured", "challenged", "asked"),
    [
        ([], "from-challenge", "from-challenge repo:write"),
        (["repo", "read:org"], "from-challenge", "repo read:org repo:write"),
    ],
)
async def test_a_sign_in_asks_for_configured_and_required_scopes(
    tmp_path: Path, configured: list[str], challenged: str, asked: str
) -> None:
    """The SDK would ask for the challenge's scopes only; a later login also asks for what
    a `403 insufficient_scope` named."""
    config = BackendOAuthConfig(type="oauth", scopes=configured, client_id="cid")
    oauth = provider(tmp_path, config)
    await oauth._initialize()
    await oauth.storage.require_scope("repo:write")
    oauth.context.client_metadata.scope = challenged  # the SDK's choice, from the 401
    with pytest.raises(NotSignedIn):  # a running gateway's flow: no authorization
        await oauth._perform_authorization()
    assert oauth.context.client_metadata.scope == asked


async def test_a_401_takes_up_tokens_another_session_refreshed(tmp_path: Path) -> None:
    """Two sessions share a sign-in: the other one refreshed first, and the authorization
    server rotated the refresh token held here; its stored tokens are used, no refresh."""
    oauth = provider(tmp_path, BackendOAuthConfig(type="oauth", client_id="cid"))
    await oauth.storage.set_tokens(OAuthToken(access_token="at-old", refresh_token="rt-1"))
    seen: list[str] = []

    async def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/token":
            seen.append("token")
            return refused(request)  # rt-1 was rotated away
        seen.append("mcp " + request.headers.get("Authorization", "").removeprefix("Bearer "))
        if seen == ["mcp at-old"]:
            renewed = OAuthToken(access_token="at-new", refresh_token="rt-2", expires_in=600)
            await oauth.storage.set_tokens(renewed)  # what the other session stored
        return accept_new(request)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handle), auth=oauth) as http:
        assert (await http.post(URL, json={})).status_code == 200
    assert seen == ["mcp at-old", "mcp at-new"]
