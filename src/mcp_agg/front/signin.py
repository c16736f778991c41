"""The HTTP front's sign-in routes for `per_user` servers: `/oauth/authorize` (a
sign-in link: 302 to the backend's authorization server) and `/oauth/callback` (its
redirect back: the tokens kept for the link's user, a page to close). The callback also
ends the gateway's own sign-in to a backend that the web console started
(`GatewaySignIns`: its tokens go where `mcp-agg login` keeps them).

They are outside the MCP bearer auth, since a browser has no token: the sealed ticket
and state authenticate the flow (backend/oauth/links.py). Neither route redirects
anywhere but to the authorization endpoint of a configured backend's authorization
server; inputs are bounded; pages are short, escaped, never cached, never framed, send
no Referer (the ticket is in the URL), and hold no token, code or ticket.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

import httpx2
from mcp.client.auth import OAuthFlowError, OAuthRegistrationError, OAuthTokenError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_agg.errors import GatewayError

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.storage import RecordTokenStorage
    from mcp_agg.backend.oauth.webflow import WebSignIn
    from mcp_agg.core.views import ReplicaView

__all__ = ["GatewaySignIns", "SignInAccessFilter", "quiet_signin_access_log", "signin_routes"]

logger = logging.getLogger(__name__)

_AUTHORIZE, _CALLBACK = "/oauth/authorize", "/oauth/callback"
_PATHS = frozenset({_AUTHORIZE, _CALLBACK})
#: The longest code, issuer or error accepted from an authorization server's redirect.
_MAX_PARAM = 2048
#: Failures of the backend's authorization server (or of reaching it).
_UPSTREAM = (OAuthFlowError, OAuthRegistrationError, OAuthTokenError, httpx2.HTTPError)
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


class GatewaySignIns:
    """The gateway's own sign-ins (`webflow.OwnSignIns`) to the servers it runs: kept
    where `mcp-agg login` keeps them (`storage_for`), so its replicas find them."""

    def __init__(self, gateway: ReplicaView) -> None:
        self.gateway = gateway

    def storage(self, server: str) -> RecordTokenStorage | None:
        from mcp_agg.backend.oauth.provider import storage_for

        spec = next((u.spec for u in self.gateway.upstreams if u.group == server), None)
        return None if spec is None or spec.server.auth is None else storage_for(spec)

    def signed_in(self, server: str) -> None:
        # A replica that failed for want of a sign-in waits out its reconnect backoff
        # (up to 30 s): it is cut short, as for a call waiting on it.
        for upstream in self.gateway.upstreams:
            if upstream.group == server:
                upstream.expedite()


def signin_routes(flow: WebSignIn) -> list[BaseRoute]:
    """The two routes of the browser sign-in."""
    # The sealed links (cryptography's Fernet): imported by a gateway that signs in only;
    # every HTTP front imports this module, for `quiet_signin_access_log`.
    from mcp_agg.backend.oauth.links import MAX_SEALED

    async def authorize(request: Request) -> Response:
        ticket = request.query_params.get("ticket")
        if not ticket or len(ticket) > MAX_SEALED:
            return _page(400, "This is not a sign-in link of this gateway.")
        try:
            location = await flow.authorize(ticket)
        except Exception as exc:
            return _failure(exc)
        return RedirectResponse(location, status_code=302, headers=_HEADERS)

    async def callback(request: Request) -> Response:
        query = request.query_params
        if any(len(v) > max(_MAX_PARAM, MAX_SEALED) for v in query.values()):
            return _page(400, "The sign-in's answer is too long to be genuine.")
        error, code, state = query.get("error"), query.get("code"), query.get("state")
        if error is not None:
            return _page(400, f"The sign-in was not completed: {error[:100]}.")
        if not code or not state:
            return _page(400, "The sign-in's answer has no code or no state.")
        try:
            server = await flow.callback(code, state, query.get("iss"))
        except Exception as exc:
            return _failure(exc)
        return _page(200, f"Signed in to {server}. You can close this window.")

    return [
        Route(_AUTHORIZE, authorize, methods=["GET"]),
        Route(_CALLBACK, callback, methods=["GET"]),
    ]


class SignInAccessFilter(logging.Filter):
    """Cuts the query off uvicorn's access log lines of the sign-in routes: it holds a
    ticket, or an authorization code and its state, which a log must never keep."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record: (client address, method, path with query, HTTP
        # version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2].partition("?")[0]
            if path in _PATHS:
                record.args = (*args[:2], path, *args[3:])
        return True


def quiet_signin_access_log() -> None:
    """Put `SignInAccessFilter` on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, SignInAccessFilter) for f in access.filters):
        access.addFilter(SignInAccessFilter())


def _failure(exc: Exception) -> Response:
    """The page for a failed step: what the user can act on, never what was exchanged."""
    from mcp_agg.backend.oauth.links import SignInError

    if isinstance(exc, SignInError):
        return _page(400, f"Cannot sign in: {exc}.")
    if isinstance(
        exc, OAuthFlowError | OAuthRegistrationError | OAuthTokenError | httpx2.HTTPError
    ):
        logger.warning("sign-in failed: %s", type(exc).__name__)
        return _page(502, f"The backend's authorization server failed ({type(exc).__name__}).")
    if isinstance(exc, GatewayError):  # the store or the token key: the operator's to fix
        logger.warning("sign-in failed: %s", exc.logged)
        return _page(503, "The gateway cannot keep sign-ins right now; try again later.")
    logger.exception("sign-in failed")
    return _page(500, "The sign-in failed.")


def _page(status: int, message: str) -> HTMLResponse:
    body = (
        '<!doctype html><html><head><meta charset="utf-8"><title>mcp-agg sign-in</title>'
        '</head><body style="font-family:sans-serif;margin:3em">'
        f"<p>{html.escape(message)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)
