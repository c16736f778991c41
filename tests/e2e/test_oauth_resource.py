"""The HTTP front as an OAuth resource server (`[gateway.auth] type = "oauth"`), with a
real gateway: discovery (RFC 9728), the challenges, JWTs checked against the issuer's
JWKS for audience = the gateway's resource (RFC 8707), scopes, and roles from a claim.

The JWKS is served by this module on a loopback port, from an RSA key pair made here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from joserfc.jwk import RSAKey

from tests.e2e.procs import demo_servers, free_port, served_gateway

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.test"
KID = "key-1"


@contextmanager
def jwks_server(keys: RSAKeyPair) -> Iterator[str]:
    """The issuer's JWKS (the public half of `keys`, as `KID`) at a loopback URL."""
    body = json.dumps(
        {"keys": [{**RSAKey.import_key(keys.public_key).as_dict(private=False), "kid": KID}]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # not on the test's stderr
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class OAuthGateway:
    url: str
    keys: RSAKeyPair

    @property
    def origin(self) -> str:
        return self.url.removesuffix("/mcp")

    def token(self, **kwargs: Any) -> str:
        """A token as the issuer would sign it for this gateway, changed by `kwargs`."""
        claims = {"issuer": ISSUER, "audience": self.url, "scopes": ["mcp:use"], "kid": KID}
        return self.keys.create_token(**{**claims, **kwargs})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthGateway]:
    folder = tmp_path_factory.mktemp("auth-oauth")
    keys = RSAKeyPair.generate()
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    config = folder / "servers.toml"
    with jwks_server(keys) as jwks_uri:
        config.write_text(
            f"""
[gateway]
connect_timeout = 60

[gateway.auth]
type = "oauth"
issuer = "{ISSUER}"
jwks_uri = "{jwks_uri}"
resource = "{resource}"
scopes_supported = ["mcp:use", "mcp:admin"]
required_scopes = ["mcp:use"]
roles_claim = "groups"
client_id_claim = "email"

[gateway.roles.admin]
allow = ["*"]

[gateway.roles.reader]
allow = ["notes_list_notes"]
{demo_servers(folder, "notes")}
"""
        )
        with served_gateway(config, port=port) as (url, _):
            assert url == resource
            yield OAuthGateway(url, keys)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
)
async def test_discovery_document(
    gateway: OAuthGateway, http: httpx.AsyncClient, path: str
) -> None:
    response = await http.get(gateway.origin + path)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "resource": gateway.url,
        "authorization_servers": [f"{ISSUER}/"],
        "scopes_supported": ["mcp:use", "mcp:admin"],
        "bearer_methods_supported": ["header"],
    }


async def test_no_token_is_challenged_to_discover(
    gateway: OAuthGateway, http: httpx.AsyncClient
) -> None:
    response = await http.post(gateway.url, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer scope="mcp:use", resource_metadata='
        f'"{gateway.origin}/.well-known/oauth-protected-resource/mcp"'
    )


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"audience": "http://elsewhere.test/mcp"}, 401, "invalid_token"),  # RFC 8707
        ({"issuer": "https://other-issuer.test"}, 401, "invalid_token"),
        ({"expires_in_seconds": -30}, 401, "invalid_token"),
        ({"kid": "unknown-key"}, 401, "invalid_token"),  # not in the issuer's JWKS
        ({"scopes": ["mcp:admin"]}, 403, "insufficient_scope"),
    ],
)
async def test_refused_tokens(
    gateway: OAuthGateway,
    http: httpx.AsyncClient,
    change: dict[str, Any],
    status: int,
    error: str,
) -> None:
    token = gateway.token(**change)
    response = await http.post(gateway.url, json={}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer error="{error}"')
    assert 'scope="mcp:use"' in challenge
    assert "resource_metadata=" in challenge


@pytest.mark.parametrize(
    ("groups", "visible"),
    [
        (
            ["admin"],
            {
                f"notes_{n}"
                for n in ("add_note", "delete_note", "list_notes", "read_note", "search_notes")
            },
        ),
        (["reader"], {"notes_list_notes"}),
        ([], set()),
    ],
)
async def test_a_valid_token_works_with_its_roles(
    gateway: OAuthGateway, groups: list[str], visible: set[str]
) -> None:
    token = gateway.token(additional_claims={"email": "ada@example.test", "groups": groups})
    transport = StreamableHttpTransport(gateway.url, headers={"Authorization": f"Bearer {token}"})
    async with Client(transport, timeout=30) as client:
        tools = {tool.name for tool in await client.list_tools()}
        assert tools == visible
        if "notes_list_notes" in visible:
            result = await client.call_tool("notes_list_notes", {})
            assert not result.is_error
