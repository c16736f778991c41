"""A backend behind OAuth: FastMCP's in-memory authorization server (registration open,
codes granted without a person) and the MCP server it protects, on one port.

`--token-seconds` shortens the access tokens' life, for the refresh tests; a POST to
`/test/revoke-all` revokes every token issued, as an administrator at the authorization
server would, and one to `/test/revoke-access` only the access tokens (the refresh tokens
still work: a backend that refuses a token before its expiry). The `token`
tool says which token the call carried (its last characters), so a test sees a refresh.
"""

from __future__ import annotations

import argparse

from fastmcp import FastMCP
from fastmcp.server.auth.providers import in_memory
from fastmcp.server.dependencies import get_access_token
from mcp.server.auth.settings import ClientRegistrationOptions
from starlette.requests import Request
from starlette.responses import PlainTextResponse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-seconds", type=int, default=3600)
    options = parser.parse_args()
    in_memory.DEFAULT_ACCESS_TOKEN_EXPIRY_SECONDS = options.token_seconds
    base = f"http://127.0.0.1:{options.port}"
    auth = in_memory.InMemoryOAuthProvider(
        base_url=base,
        client_registration_options=ClientRegistrationOptions(enabled=True),
    )
    server = FastMCP("protected", auth=auth)

    @server.tool
    def token() -> str:
        """The end of the access token this call carried."""
        access = get_access_token()
        return "none" if access is None else access.token[-8:]

    @server.custom_route("/test/revoke-all", methods=["POST"])
    async def revoke_all(request: Request) -> PlainTextResponse:
        auth.access_tokens.clear()
        auth.refresh_tokens.clear()
        return PlainTextResponse("revoked")

    @server.custom_route("/test/revoke-access", methods=["POST"])
    async def revoke_access(request: Request) -> PlainTextResponse:
        auth.access_tokens.clear()
        return PlainTextResponse("revoked")

    server.run(transport="http", host="127.0.0.1", port=options.port, show_banner=False)


if __name__ == "__main__":
    main()
