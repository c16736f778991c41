"""Whether a streamable HTTP backend refused a request for a session it no longer knows.

A backend that restarted, or expired the session, refuses every request of the old one:
the spec has it answer HTTP 404, the TypeScript SDK's servers (server-everything among
them) answer 400 with a JSON-RPC error that has no id. The SDK's client turns the first
into "Session terminated" or the server's own message, and the second into -32603 "Server
returned an error response", indistinguishable from any other failure. So the HTTP answer
is read here, by an httpx event hook, and handed to the request that sent it through a
context variable: the SDK sends each request from a task run in the sender's context (as
the trace headers of observability/tracing.py rely on too).

A request refused this way never reached a tool: it may be sent again on a new session.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import httpx2
from mcp.client.streamable_http import MCP_SESSION_ID

__all__ = ["SessionCheck", "note_session_refusal"]


@dataclass(slots=True)
class SessionCheck:
    """What the HTTP answers to one request said of its session."""

    #: The backend refused the request: it does not know the session it was sent in.
    gone: bool = False

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While the request is sent: the HTTP transport reports its answer here."""
        token = _current.set(self)
        try:
            yield
        finally:
            _current.reset(token)


_current: ContextVar[SessionCheck | None] = ContextVar("mcp_agg_session_check", default=None)


async def note_session_refusal(response: httpx2.Response) -> None:
    """An httpx response hook: a POST in a session refused for that session is noted on
    the check of the request that sent it, if one is watching."""
    check = _current.get()
    request = response.request
    if check is None or request.method != "POST" or MCP_SESSION_ID not in request.headers:
        return
    if await _refuses_session(response):
        check.gone = True


async def _refuses_session(response: httpx2.Response) -> bool:
    """404 (the spec's answer), or 400 with a JSON-RPC error without an id that speaks of
    the session (the TypeScript SDK's: the request was refused before its id was read)."""
    if response.status_code == 404:
        return True
    content_type = response.headers.get("content-type", "")
    if response.status_code != 400 or not content_type.startswith("application/json"):
        return False
    try:
        body = json.loads(await response.aread())
    except (httpx2.HTTPError, httpx2.StreamError, ValueError):
        return False
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or body.get("id") is not None:
        return False
    return "session" in str(error.get("message", "")).lower()
