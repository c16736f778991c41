"""The ASGI middleware that refuses what `mcp_agg.security.origin`'s policy rejects.

Apart from the policy because it needs starlette, which the config (and so the start of
`serve`, before its backends start) has no use for.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_agg.security.origin import HostOriginPolicy

__all__ = ["HostOriginGuard"]


class HostOriginGuard:
    """ASGI middleware: refuse (403) a request whose Host or Origin the policy rejects.

    Runs before anything else in the app, so a refused request creates no session and
    is never parsed. Lifespan events pass through; a refused websocket is closed.
    """

    def __init__(self, app: ASGIApp, policy: HostOriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = self.policy.refusal(Headers(scope=scope))
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason})
        else:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": reason}}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
