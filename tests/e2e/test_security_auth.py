"""Security on the HTTP front, with real processes: authentication, per-role access, no
token passthrough, and the refusal to serve an unauthenticated non-loopback bind.

Two gateways run for the module: one with static bearer tokens (read from the
environment through `${VAR}`) in front of the notes and units demo servers and the
`headers` backend, and one verifying JWTs signed by an RSA key pair made here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server.auth.providers.jwt import RSAKeyPair
from mcp.client.subscriptions import listen
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    backend_process,
    demo_servers,
    free_port,
    kill_group,
    port_open,
    post_initialize,
    served_gateway,
    wait_until,
)

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.test"
AUDIENCE = "mcp-agg-test"

#: Tokens as the gateway's environment holds them; nothing here is a real secret.
TOKENS = {
    "ADMIN_TOKEN": "admin-token-for-tests",
    "READER_TOKEN": "reader-token-for-tests",
    "LIMITED_TOKEN": "limited-token-for-tests",
    "NOBODY_TOKEN": "nobody-token-for-tests",
    "BACKEND_TOKEN": "backend-own-token-for-tests",
}

ROLES = """
[gateway.roles.admin]
allow = ["*"]

[gateway.roles.reader]
allow = ["notes_list_notes", "notes_read_note", "units_*", "notes://index", "units://*"]

# Takes units away from whatever else a caller holds: deny wins across roles.
[gateway.roles.no_units]
deny = ["units_*", "units://*"]
"""


@dataclass(frozen=True)
class BearerGateway:
    url: str
    record: Path


@pytest.fixture(scope="module")
def bearer_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BearerGateway]:
    folder = tmp_path_factory.mktemp("auth-bearer")
    record = folder / "headers.jsonl"
    record.touch()
    backend_port, port = free_port(), free_port()
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60
request_timeout = 30

[gateway.auth]
type = "bearer"

[[gateway.auth.tokens]]
token = "${{ADMIN_TOKEN}}"
client_id = "admin"
roles = ["admin"]

[[gateway.auth.tokens]]
token = "${{READER_TOKEN}}"
client_id = "reader"
roles = ["reader"]

[[gateway.auth.tokens]]
token = "${{LIMITED_TOKEN}}"
client_id = "limited"
roles = ["admin", "no_units"]

[[gateway.auth.tokens]]
token = "${{NOBODY_TOKEN}}"
client_id = "nobody"
roles = []
{ROLES}
{demo_servers(folder)}
[[servers]]
name = "proto"
command = "python"
args = ["{BACKENDS / "protocol.py"}", "--events-file", "{folder / "events.txt"}"]

[[servers]]
name = "headers"
url = "http://127.0.0.1:{backend_port}/mcp"
headers = {{ Authorization = "Bearer ${{BACKEND_TOKEN}}", X-Backend-Key = "backend-key" }}
"""
    )
    with (
        backend_process(BACKENDS / "headers.py", "--record-file", str(record), port=backend_port),
        served_gateway(config, port=port, env=TOKENS) as (url, _),
    ):
        yield BearerGateway(url, record)


@dataclass(frozen=True)
class JwtGateway:
    url: str
    keys: RSAKeyPair


@pytest.fixture(scope="module")
def jwt_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwtGateway]:
    folder = tmp_path_factory.mktemp("auth-jwt")
    keys = RSAKeyPair.generate()
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 60

[gateway.auth]
type = "jwt"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
public_key = "${{JWT_PUBLIC_KEY}}"
roles_claim = "realm_access.roles"
client_id_claim = "email"
{ROLES}
{demo_servers(folder)}
"""
    )
    with served_gateway(config, env={"JWT_PUBLIC_KEY": keys.public_key}) as (url, _):
        yield JwtGateway(url, keys)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def client(url: str, token: str, mode: str = "auto") -> Client[Any]:
    transport = StreamableHttpTransport(url, headers={"Authorization": f"Bearer {token}"})
    return Client(transport, mode=mode, timeout=30)  # type: ignore[arg-type]


def assert_unauthorized(response: httpx.Response, *, invalid: bool) -> None:
    """401 before any MCP processing, with a Bearer challenge (RFC 6750 §3)."""
    assert response.status_code == 401, response.text
    assert "mcp-session-id" not in response.headers
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is invalid


async def outcome(call: Any) -> tuple[str, str]:
    """What a client sees of a request: its result or its JSON-RPC error, as text."""
    try:
        result = await call
    except MCPError as exc:
        return "error", f"{exc.error.code} {exc.error.message}"
    if isinstance(result, mcp_types.CallToolResult):
        text = " ".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))
        return ("tool-error" if result.is_error else "ok"), text
    return "ok", repr(result)


async def assert_same_as_unknown(
    hidden: str, unknown: str, request: Any, *args: Any, **kwargs: Any
) -> None:
    """Asking for a hidden name gets exactly the answer an unknown name gets."""
    seen_hidden = await outcome(request(hidden, *args, **kwargs))
    seen_unknown = await outcome(request(unknown, *args, **kwargs))
    assert seen_hidden[0] != "ok", seen_hidden
    assert seen_hidden == (seen_unknown[0], seen_unknown[1].replace(unknown, hidden))


# ---------------------------------------------------------------- authentication


async def test_no_token_is_401(http: httpx.AsyncClient, bearer_gateway: BearerGateway) -> None:
    assert_unauthorized(await post_initialize(http, bearer_gateway.url), invalid=False)
    # Another scheme is no bearer token either.
    basic = await post_initialize(http, bearer_gateway.url, {"Authorization": "Basic YTpi"})
    assert_unauthorized(basic, invalid=False)
    # GET and DELETE on the endpoint are guarded too.
    assert_unauthorized(
        await http.get(bearer_gateway.url, headers={"Accept": "text/event-stream"}),
        invalid=False,
    )
    assert_unauthorized(await http.delete(bearer_gateway.url), invalid=False)


async def test_wrong_token_is_401(http: httpx.AsyncClient, bearer_gateway: BearerGateway) -> None:
    for token in ("not-a-token", TOKENS["ADMIN_TOKEN"] + "x", TOKENS["BACKEND_TOKEN"]):
        response = await post_initialize(
            http, bearer_gateway.url, {"Authorization": f"Bearer {token}"}
        )
        assert_unauthorized(response, invalid=True)


async def test_good_token_is_served(http: httpx.AsyncClient, bearer_gateway: BearerGateway) -> None:
    response = await post_initialize(
        http, bearer_gateway.url, {"Authorization": f"Bearer {TOKENS['READER_TOKEN']}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers.get("mcp-session-id")
    async with client(bearer_gateway.url, TOKENS["ADMIN_TOKEN"]) as admin:
        result = await admin.call_tool_mcp("notes_add_note", {"title": "t", "body": "b"})
        assert not result.is_error, result


# ---------------------------------------------------------------- per-role access


async def test_reader_sees_only_what_its_role_allows(bearer_gateway: BearerGateway) -> None:
    async with client(bearer_gateway.url, TOKENS["READER_TOKEN"]) as reader:
        tools = {t.name for t in await reader.list_tools()}
        assert "notes_list_notes" in tools
        assert "units_convert" in tools
        assert "notes_add_note" not in tools
        assert "notes_delete_note" not in tools
        assert "headers_headers" not in tools
        resources = {str(r.uri) for r in await reader.list_resources()}
        assert resources == {"notes://index", "units://list"}
        assert await reader.list_resource_templates() == []
        # `units_*` allows the units prompt too: patterns match every kind of name.
        assert {p.name for p in await reader.list_prompts()} == {"units_explain_conversion"}

        ok = await reader.call_tool_mcp("notes_list_notes", {})
        assert not ok.is_error, ok
        assert await reader.read_resource("notes://index")


async def test_denied_tool_answers_as_unknown(bearer_gateway: BearerGateway) -> None:
    args = {"title": "secret", "body": "b"}
    for mode in ("auto", "legacy"):
        async with client(bearer_gateway.url, TOKENS["READER_TOKEN"], mode) as reader:
            await assert_same_as_unknown(
                "notes_add_note", "notes_no_such_tool", reader.call_tool_mcp, args
            )
    async with client(bearer_gateway.url, TOKENS["ADMIN_TOKEN"]) as admin:
        assert "secret" not in " ".join(
            json.dumps(r.model_dump(mode="json")) for r in await admin.list_resources()
        )


async def test_denied_resources_and_prompts_answer_as_unknown(
    bearer_gateway: BearerGateway,
) -> None:
    async with client(bearer_gateway.url, TOKENS["ADMIN_TOKEN"]) as admin:
        await admin.call_tool_mcp("notes_add_note", {"title": "x", "body": "hidden"})
        assert await admin.read_resource("notes://note/x")
        assert await admin.get_prompt("notes_summarize_note", {"title": "x"})
    async with client(bearer_gateway.url, TOKENS["READER_TOKEN"], "legacy") as reader:
        # A resource read through a hidden template, and a hidden prompt.
        await assert_same_as_unknown("notes://note/x", "nowhere://nothing/x", reader.read_resource)
        await assert_same_as_unknown(
            "notes_summarize_note", "notes_no_such_prompt", reader.get_prompt, {"title": "x"}
        )
        # Subscriptions and completions see the same catalog.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # a handshake-era method
            await assert_same_as_unknown(
                "notes://note/x", "nowhere://nothing/x", reader.session.subscribe_resource
            )
    refs = [
        mcp_types.PromptReference(type="ref/prompt", name="proto_greet"),
        mcp_types.ResourceTemplateReference(type="ref/resource", uri="files://{name}"),
    ]
    for ref in refs:
        async with client(bearer_gateway.url, TOKENS["ADMIN_TOKEN"], "legacy") as admin:
            shown = await admin.complete(ref, {"name": "name", "value": ""})
            assert shown.values, ref
        async with client(bearer_gateway.url, TOKENS["READER_TOKEN"], "legacy") as reader:
            hidden = await reader.complete(ref, {"name": "name", "value": ""})
            assert hidden.values == [], ref
    async with client(bearer_gateway.url, TOKENS["READER_TOKEN"]) as modern:

        async def listen_to(uri: str) -> None:
            async with listen(modern.session, resource_subscriptions=[uri]):
                pass

        await assert_same_as_unknown("notes://note/x", "nowhere://nothing/x", listen_to)


async def test_roles_combine_and_deny_wins(bearer_gateway: BearerGateway) -> None:
    async with client(bearer_gateway.url, TOKENS["LIMITED_TOKEN"]) as limited:
        tools = {t.name for t in await limited.list_tools()}
        assert "notes_add_note" in tools
        assert "headers_headers" in tools
        assert not {t for t in tools if t.startswith("units_")}
        resources = {str(r.uri) for r in await limited.list_resources()}
        assert resources == {"notes://index", "counter://value"}
        await assert_same_as_unknown(
            "units_convert", "units_no_such_tool", limited.call_tool_mcp, {}
        )


async def test_a_token_without_roles_sees_nothing(bearer_gateway: BearerGateway) -> None:
    async with client(bearer_gateway.url, TOKENS["NOBODY_TOKEN"]) as nobody:
        assert await nobody.list_tools() == []
        assert await nobody.list_resources() == []
        assert await nobody.list_prompts() == []


# ---------------------------------------------------------------- JWT


async def test_jwt_roles_come_from_the_claim(jwt_gateway: JwtGateway) -> None:
    token = jwt_gateway.keys.create_token(
        subject="u-1",
        issuer=ISSUER,
        audience=AUDIENCE,
        additional_claims={"email": "ann@example.test", "realm_access": {"roles": ["reader"]}},
    )
    async with client(jwt_gateway.url, token) as reader:
        tools = {t.name for t in await reader.list_tools()}
        assert "notes_list_notes" in tools
        assert "notes_add_note" not in tools
        await assert_same_as_unknown(
            "notes_add_note", "notes_no_such_tool", reader.call_tool_mcp, {}
        )
    admin = jwt_gateway.keys.create_token(
        issuer=ISSUER, audience=AUDIENCE, additional_claims={"realm_access": {"roles": ["admin"]}}
    )
    async with client(jwt_gateway.url, admin) as admin_client:
        assert "notes_add_note" in {t.name for t in await admin_client.list_tools()}


async def test_bad_jwts_are_401(http: httpx.AsyncClient, jwt_gateway: JwtGateway) -> None:
    keys, claims = jwt_gateway.keys, {"realm_access": {"roles": ["admin"]}}
    good = keys.create_token(issuer=ISSUER, audience=AUDIENCE, additional_claims=claims)
    bad = {
        "expired": keys.create_token(
            issuer=ISSUER, audience=AUDIENCE, expires_in_seconds=-60, additional_claims=claims
        ),
        "wrong audience": keys.create_token(
            issuer=ISSUER, audience="someone-else", additional_claims=claims
        ),
        "wrong issuer": keys.create_token(
            issuer="https://evil.test", audience=AUDIENCE, additional_claims=claims
        ),
        "another key": RSAKeyPair.generate().create_token(
            issuer=ISSUER, audience=AUDIENCE, additional_claims=claims
        ),
    }
    for what, token in bad.items():
        response = await post_initialize(
            http, jwt_gateway.url, {"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, what
        assert_unauthorized(response, invalid=True)
    response = await post_initialize(http, jwt_gateway.url, {"Authorization": f"Bearer {good}"})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- no token passthrough


async def test_client_authorization_never_reaches_a_backend(
    bearer_gateway: BearerGateway,
) -> None:
    client_token = TOKENS["ADMIN_TOKEN"]
    async with client(bearer_gateway.url, client_token) as admin:
        result = await admin.call_tool_mcp("headers_headers", {})
    assert not result.is_error, result
    seen = result.structured_content
    assert isinstance(seen, dict)
    received = {k.lower(): v for k, v in seen.items()}
    # The backend's own configured headers arrive ...
    assert received["authorization"] == f"Bearer {TOKENS['BACKEND_TOKEN']}"
    assert received["x-backend-key"] == "backend-key"
    # ... and the client's token arrives on no request at all, under no header.
    recorded = bearer_gateway.record.read_text().splitlines()
    assert len(recorded) >= 2  # the call, and the requests before it (initialize, listings)
    assert client_token not in bearer_gateway.record.read_text()
    for line in recorded:
        headers = {k.lower(): v for k, v in json.loads(line).items()}
        assert headers.get("authorization") == f"Bearer {TOKENS['BACKEND_TOKEN']}"


# ---------------------------------------------------------------- non-loopback bind


def _bare_config(folder: Path) -> Path:
    config = folder / "servers.toml"
    config.write_text("[gateway]\nconnect_timeout = 30\n")  # no backends: nothing to wait for
    return config


def test_non_loopback_bind_without_auth_is_refused(tmp_path: Path) -> None:
    config = _bare_config(tmp_path)
    serve = [PYTHON, "-m", "mcp_agg", "serve", "-c", str(config), "--transport", "http"]
    refused = subprocess.run(
        [*serve, "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "without authentication" in refused.stderr
    assert "--insecure" in refused.stderr
    assert "[gateway.auth]" in refused.stderr

    port = free_port()
    proc = subprocess.Popen(
        [*serve, "--host", "0.0.0.0", "--port", str(port), "--insecure"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 60, "the gateway")
        assert proc.poll() is None, f"gateway exited with {proc.returncode}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        assert b"WITHOUT authentication" in proc.stderr.read()
    finally:
        kill_group(proc)
