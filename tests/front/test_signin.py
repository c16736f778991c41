"""The sign-in routes' own rules: bounded inputs, pages that are escaped, never cached or
framed, send no Referer and hold no secret; a link for a server that is no longer a
`per_user` one is refused before anything is sent anywhere; the access log keeps no
ticket or code."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from mcp_agg.backend.oauth.links import SignInLinks, Ticket
from mcp_agg.backend.oauth.peruser import UserTokens
from mcp_agg.backend.oauth.webflow import WebSignIn
from mcp_agg.config import ServerConfig
from mcp_agg.front.signin import SignInAccessFilter, signin_routes
from mcp_agg.store import MemoryStore

KEY = "token-key-0123456789"
LINKS = SignInLinks(KEY, "https://gw.example")
#: The only server of the gateway: not a `per_user` one.
PLAIN = ServerConfig(name="remote", url="https://h/mcp")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    store = MemoryStore()
    servers = {"remote": PLAIN}.get
    routes = signin_routes(WebSignIn(LINKS, UserTokens(store, KEY, "memory"), store, servers))
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url="https://gw.example") as client:
        yield client


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/oauth/authorize", 400, "not a sign-in link"),
        ("/oauth/authorize?ticket=" + "A" * 5000, 400, "not a sign-in link"),
        ("/oauth/authorize?ticket=gAAAAAB-forged", 400, "was altered"),
        ("/oauth/authorize?{link}", 400, "no longer takes per-user sign-ins"),
        ("/oauth/callback?code=c", 400, "no code or no state"),
        ("/oauth/callback?code=" + "c" * 5000 + "&state=s", 400, "too long"),
        ("/oauth/callback?code=c&state=forged", 400, "was altered"),
        ("/oauth/callback?error=<script>x</script>", 400, "&lt;script&gt;"),
    ],
)
async def test_what_cannot_be_a_sign_in_gets_a_plain_page(
    http: httpx.AsyncClient, path: str, status: int, says: str
) -> None:
    # A link made now, not when the table is collected: a whole test run outlasts one.
    link = urlsplit(LINKS.link(Ticket("client:a", "remote", "https://h/mcp"))).query
    answer = await http.get(path.replace("{link}", link))
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert "<script>" not in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "location" not in answer.headers


def test_the_access_log_keeps_no_query_of_the_sign_in_routes() -> None:
    def record(path: str) -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.access",
            logging.INFO,
            __file__,
            1,
            '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:1", "GET", path, "1.1", 200),
            None,
        )

    shown = record("/oauth/callback?code=secret-code&state=sealed")
    kept = record("/mcp?x=1")
    assert SignInAccessFilter().filter(shown)
    assert SignInAccessFilter().filter(kept)
    assert shown.getMessage() == '127.0.0.1:1 - "GET /oauth/callback HTTP/1.1" 200'
    assert kept.getMessage() == '127.0.0.1:1 - "GET /mcp?x=1 HTTP/1.1" 200'
