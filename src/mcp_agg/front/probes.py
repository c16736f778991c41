"""`GET /healthz` and `GET /readyz`: what a load balancer or Kubernetes asks a replica.

`/healthz` is 200 while the process serves HTTP at all (liveness). `/readyz` is 200 once
the config is loaded and the gateway takes calls, and 503 while it is starting and from
the moment it begins to drain (SIGTERM), so a load balancer stops sending it requests
while the calls in flight finish (readiness).

They are answered before every other layer: outside authentication (a probe has no
token) and outside the Host/Origin guard (a kubelet's probe carries the pod's IP as its
Host, which an operator's `allowed_hosts` rarely lists). They reveal nothing but the
replica's state.
"""

from __future__ import annotations

import json
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Probes", "ReadyState"]

ReadyState = Literal["starting", "ready", "draining"]

_PATHS = frozenset({"/healthz", "/readyz"})


class Probes:
    """ASGI layer answering the probes (module docstring); everything else passes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: ReadyState = "starting"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in _PATHS:
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


async def _answer(send: Send, status: int, body: dict[str, str], method: str) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})
