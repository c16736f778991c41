"""Where the user authorizes a backend: the `SignInFlow`s of provider.py.

`LoopbackSignIn` is `mcp-agg login`'s: it prints the authorization URL, opens a browser
where there is one, and receives the redirect on a loopback port (RFC 8252), with
FastMCP's callback server. `FollowSignIn` is a headless client's (the conformance client):
it requests the authorization URL itself and reads the code from the redirect, as an
authorization server that approves without a person (a test's) answers at once.
"""

from __future__ import annotations

import contextlib
import sys
import webbrowser
from collections.abc import AsyncIterator
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from fastmcp.client.oauth_callback import OAuthCallbackResult, create_oauth_callback_server
from fastmcp.utilities.http import find_available_port
from mcp.client.auth import OAuthFlowError
from mcp.shared.auth import AuthorizationCodeResult

__all__ = ["FollowSignIn", "LoopbackSignIn", "loopback_sign_in"]

_HOST = "127.0.0.1"


class LoopbackSignIn:
    """A person signs in in a browser; the redirect comes back to a loopback port."""

    def __init__(self, port: int, out: TextIO, timeout: float) -> None:
        self.port = port
        self.out = out
        self.timeout = timeout
        self.result = OAuthCallbackResult()
        self.ready = anyio.Event()

    @property
    def redirect_uri(self) -> str:
        return f"http://{_HOST}:{self.port}/callback"

    async def redirect(self, authorization_url: str) -> None:
        print(f"Open this URL to sign in:\n\n  {authorization_url}\n", file=self.out, flush=True)
        with contextlib.suppress(webbrowser.Error):
            webbrowser.open(authorization_url)  # False where there is no browser: fine

    async def callback(self) -> AuthorizationCodeResult:
        try:
            with anyio.fail_after(self.timeout):
                await self.ready.wait()
        except TimeoutError:
            raise OAuthFlowError(f"no sign-in within {self.timeout:g}s") from None
        if self.result.error is not None:
            raise OAuthFlowError(f"the sign-in failed: {self.result.error}")
        if self.result.code is None:
            raise OAuthFlowError("the sign-in's redirect carried no code")
        return AuthorizationCodeResult(
            code=self.result.code, state=self.result.state, iss=self.result.iss
        )


@contextlib.asynccontextmanager
async def loopback_sign_in(
    port: int | None = None, out: TextIO = sys.stderr, wait_seconds: float = 300
) -> AsyncIterator[LoopbackSignIn]:
    """A `LoopbackSignIn` whose callback server listens for as long as the block runs
    (bound before the URL is shown, so a quick browser never finds the port closed)."""
    flow = LoopbackSignIn(port or find_available_port(_HOST), out, wait_seconds)
    server = create_oauth_callback_server(
        port=flow.port, host=_HOST, result_container=flow.result, result_ready=flow.ready
    )

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's answer to a port it cannot bind
            raise OSError(f"cannot listen on {flow.redirect_uri} for the sign-in") from None

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        # uvicorn's Server has a `started` flag, no event to wait on.
        while not server.started:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        try:
            yield flow
        finally:
            server.should_exit = True
            tg.cancel_scope.cancel()


class FollowSignIn:
    """A headless sign-in: the authorization URL is requested here, and the code read
    from the redirect it answers with."""

    redirect_uri = "http://127.0.0.1:3000/callback"

    def __init__(self) -> None:
        self._result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx2.AsyncClient() as client:
            response = await client.get(authorization_url, follow_redirects=False)
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            raise OAuthFlowError(
                f"the authorization endpoint answered {response.status_code}, not a redirect"
            )
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        if "code" not in query:
            raise OAuthFlowError(f"the authorization redirect carried no code: {query}")
        self._result = AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        if self._result is None:
            raise OAuthFlowError("no authorization redirect was followed")
        return self._result
