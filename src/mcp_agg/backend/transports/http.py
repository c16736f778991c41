"""HTTP transports to a backend: streamable HTTP, and SSE for older servers.

FastMCP's streamable HTTP transport keeps the SDK's 1 MiB cap on one server-sent event,
so a large result would fail only when its backend is remote: the transport here has no
cap, and it reads each answer for a backend that no longer knows the session
(sessions.py). Both kinds take a request hook, which sees (and may add headers to) every
request before it is sent: how trace context reaches a backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, TYPE_CHECKING

import httpx2
from fastmcp.client.transports import ClientTransport, SSETransport
from fastmcp.client.transports.base import SessionKwargs, TransportOptions
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import McpHttpClientFactory, create_mcp_http_client
from typing_extensions import Unpack

from mcp_agg.backend.transports.options import relay_options
from mcp_agg.backend.transports.sessions import note_session_refusal

if TYPE_CHECKING:
    from mcp_agg.backend.oauth.provider import SignInFlow
    from mcp_agg.backend.transports.stdio import ExitHook
    from mcp_agg.config import ReplicaSpec

__all__ = ["RequestHook", "StreamableHttpRelayTransport", "http_transport"]

#: Read timeout for one HTTP backend response; the gateway's own deadline is shorter.
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)

#: An httpx request event hook: sees (and may add headers to) each request before it is sent.
RequestHook = Callable[[httpx2.Request], Awaitable[None]]


class StreamableHttpRelayTransport(ClientTransport):
    """Streamable HTTP to a backend with no cap on the size of one server-sent event, whose
    answers that refuse the session are noted for the request they answer."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        on_request: RequestHook | None = None,
        auth: httpx2.Auth | None = None,
    ) -> None:
        self.url = url
        self.headers = dict(headers)
        self.on_request = on_request
        self.auth = auth

    @contextlib.asynccontextmanager
    async def connect_session(
        self,
        *,
        transport_options: TransportOptions | None = None,
        **session_kwargs: Unpack[SessionKwargs],
    ) -> AsyncIterator[ClientSession]:
        options = transport_options or relay_options()
        http_client = _http_client(self.on_request)(
            headers=self.headers, timeout=_HTTP_TIMEOUT, auth=self.auth
        )
        async with (
            http_client,
            streamable_http_client(self.url, http_client=http_client, max_sse_event_size=None) as (
                read_stream,
                write_stream,
            ),
            options.session_class(read_stream, write_stream, **session_kwargs) as session,
        ):
            yield session

    def __repr__(self) -> str:
        return f"<StreamableHttpRelayTransport(url={self.url!r})>"


def http_transport(
    spec: ReplicaSpec,
    stderr: IO[str] | None = None,
    on_request: RequestHook | None = None,
    on_exit: ExitHook | None = None,
    *,
    sign_in: SignInFlow | None = None,
    auth: httpx2.Auth | None = None,
) -> ClientTransport:
    """The transport to an HTTP or SSE backend (`stderr` and `on_exit` are a stdio
    child's: unused). A server with `auth` signs in with its stored tokens; `sign_in` is
    where the user authorizes when there are none (`mcp-agg login`, a headless client).
    `auth` replaces the gateway's own sign-in (a `per_user` session's, with its user's)."""
    server = spec.server
    assert server.url is not None  # the caller chose this factory for a url
    if auth is None and server.auth is not None:
        # The OAuth client and token storage: imported for a server with `auth`.
        from mcp_agg.backend.oauth.provider import oauth_for

        auth = oauth_for(spec, sign_in)
    if server.kind == "sse":
        return SSETransport(
            server.url,
            headers=dict(server.headers),
            auth=auth,
            httpx_client_factory=None if on_request is None else _http_client(on_request),
        )
    return StreamableHttpRelayTransport(server.url, server.headers, on_request, auth)


def _http_client(on_request: RequestHook | None) -> McpHttpClientFactory:
    """The SDK's HTTP client factory, with `on_request` as a request event hook and the
    check for a refused session as a response hook."""

    def create(
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        hooks = client.event_hooks
        client.event_hooks = {
            "request": [*hooks["request"], *([] if on_request is None else [on_request])],
            "response": [*hooks["response"], note_session_refusal],
        }
        return client

    return create
