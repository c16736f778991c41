"""`GET /healthz` and `GET /readyz`: what a load balancer or Kubernetes asks a replica.

`/healthz` is 200 while the process serves HTTP at all (liveness). `/readyz` is 200 once
the config is loaded and the gateway takes calls, and 503 while it is starting and from
the moment it begins to drain (SIGTERM), so a load balancer stops sending it requests
while the calls in flight finish (readiness).

While starting, the front already listens (a load balancer's check gets 503, not a
refused connection, and its checks keep a starting replica out of rotation). MCP itself
is served from the start, for a client that reaches the replica anyway (the one that
started it): `initialize` is answered at once, and every other request waits until the
gateway has started (`mcp_agg.front.starting`), as on stdio. The OAuth metadata under
`/.well-known/` passes too (it needs no backend, and a client signing in reads it
before its `initialize`). Every other route (the console, the admin API, sign-in)
answers 503 and a JSON-RPC error at once, with `Retry-After`.

They are answered before every other layer: outside authentication (a probe has no
token) and outside the Host/Origin guard (a kubelet's probe carries the pod's IP as its
Host, which an operator's `allowed_hosts` rarely lists). They reveal nothing but the
replica's state.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ProbeAccessFilter", "Probes", "ReadyState", "quiet_probe_access_log"]

ReadyState = Literal["starting", "ready", "draining"]

_PATHS = frozenset({"/healthz", "/readyz"})
#: The error of a request that reaches a replica still starting: -32000, the code the
#: drain's refusals have too (the server is not taking requests).
_STARTING = {
    "jsonrpc": "2.0",
    "id": None,
    "error": {"code": -32000, "message": "mcp-agg is starting: not ready for requests yet"},
}


class Probes:
    """ASGI layer answering the probes (module docstring); everything else passes."""

    def __init__(self, app: ASGIApp, *, mcp_path: str) -> None:
        self.app = app
        self.state: ReadyState = "starting"
        self._mcp_path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in _PATHS:
            if self.state == "starting" and not self._served_while_starting(scope["path"]):
                await _answer(send, 503, _STARTING, scope["method"])
            else:
                await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, {"error": "method not allowed"}, scope["method"])
            return
        if scope["path"] == "/healthz":
            await _answer(send, 200, {"status": "live"}, scope["method"])
        else:
            status = 200 if self.state == "ready" else 503
            await _answer(send, status, {"status": self.state}, scope["method"])

    def _served_while_starting(self, path: str) -> bool:
        return path == self._mcp_path or path.startswith("/.well-known/")


async def _answer(send: Send, status: int, body: dict[str, Any], method: str) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    elif status == 503 and body is _STARTING:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})


class ProbeAccessFilter(logging.Filter):
    """Drops uvicorn's access log lines of the probes, keeps every other request's.

    A load balancer checks each replica every half second or so (deploy/haproxy.cfg:
    500 ms) and Kubernetes adds its own: their lines would bury the requests that
    matter, and say nothing a probe's status does not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn's access record: (client address, method, path with query, HTTP
        # version, status).
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            return args[2].partition("?")[0] not in _PATHS
        return True


def quiet_probe_access_log() -> None:
    """Put `ProbeAccessFilter` on uvicorn's access logger (once)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, ProbeAccessFilter) for f in access.filters):
        access.addFilter(ProbeAccessFilter())
