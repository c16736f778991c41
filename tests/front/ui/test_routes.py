"""Tests for the console's routes (`mcp_agg.front.ui.routes`), served in process: who
gets in, the login cookie, CSRF on actions, and the tool runner through the pipeline.

The gateway's backend cannot be reached; its own tools (`expose_gateway_tools`) are
what the runner calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from mcp.shared.auth import OAuthToken
from starlette.applications import Starlette

from mcp_agg.backend.oauth.links import SignInLinks
from mcp_agg.backend.oauth.peruser import UserTokens
from mcp_agg.backend.oauth.provider import storage_for
from mcp_agg.backend.oauth.webflow import WebSignIn
from mcp_agg.config import load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.front.ui import ui_routes
from mcp_agg.front.ui.session import COOKIE
from mcp_agg.front.ui.signins import TTL, SignInCache
from mcp_agg.store import MemoryStore
from tests.e2e.procs import free_port
from tests.fakes import FakeClock

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    path = tmp_path / "servers.toml"
    path.write_text(
        f"""
[gateway]
connect_timeout = 2
expose_gateway_tools = true
pin = "warn"
[gateway.admin]
token = "{TOKEN}"

[[servers]]
name = "gone"
url = "http://127.0.0.1:{free_port()}/mcp"
"""
    )
    return Gateway(load_config(path))


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=Starlette(routes=ui_routes(gateway)))
    async with (
        gateway.running(),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
    ):
        yield client


async def logged_in(http: httpx.AsyncClient) -> str:
    """Log in; the page's CSRF token."""
    answer = await http.post("/ui/login", data={"token": TOKEN})
    assert answer.status_code == 303
    page = await http.get("/ui/servers")
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert found is not None
    return found.group(1)


def test_no_console_without_admin_config(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text("")
    assert ui_routes(Gateway(load_config(path))) == []


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/ui/servers", 303),  # a page: to the login form
        ("GET", "/ui/catalog", 303),
        ("GET", "/ui/servers/rows", 401),  # a fragment: 401, htmx goes to the login form
        ("GET", "/ui/traffic/panel", 401),
        ("GET", "/ui/tools/gateway_health", 303),
        ("POST", "/ui/tools/gateway_health", 401),
        ("POST", "/ui/actions/approve-pins", 401),
        ("POST", "/ui/actions/reload", 401),
        ("POST", "/ui/actions/servers", 401),
        ("POST", "/ui/actions/servers/gone/sign-in", 401),
        ("POST", "/ui/actions/replicas/gone-1/drain", 401),
        ("POST", "/ui/actions/replicas/gone-1/admit", 401),
    ],
)
async def test_nothing_but_the_login_form_without_the_token(
    http: httpx.AsyncClient, method: str, url: str, status: int
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        answer = await http.request(method, url, headers=headers)
        assert answer.status_code == status
        if status == 303:
            assert answer.headers["location"] == "/ui/login"


async def test_a_wrong_token_is_refused_at_login(http: httpx.AsyncClient) -> None:
    answer = await http.post("/ui/login", data={"token": "not-the-token"})
    assert answer.status_code == 401
    assert "the admin token is not valid" in answer.text
    assert COOKIE not in answer.cookies


async def test_login_sets_a_strict_httponly_cookie_without_the_token(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post("/ui/login", data={"token": TOKEN})
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert TOKEN not in cookie
    page = await http.get("/ui/servers")
    assert page.status_code == 200
    assert 'data-replica="gone-1"' in page.text
    assert TOKEN not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_an_action_needs_the_csrf_token_of_the_session(http: httpx.AsyncClient) -> None:
    csrf = await logged_in(http)
    reload = "/ui/actions/reload"
    assert (await http.post(reload)).status_code == 403
    assert (await http.post(reload, headers={"X-CSRF-Token": "0" * 64})).status_code == 403
    assert (await http.post("/ui/logout", data={"csrf": "wrong"})).status_code == 403
    assert (await http.post(reload, headers={"X-CSRF-Token": csrf})).status_code == 200
    assert (await http.post("/ui/logout", data={"csrf": csrf})).status_code == 303


async def test_the_bearer_token_opens_it_without_csrf(http: httpx.AsyncClient) -> None:
    answer = await http.post("/ui/actions/reload", headers=AUTH)
    assert answer.status_code == 200


async def test_the_tool_runner_calls_through_the_pipeline(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    form = await http.get("/ui/tools/gateway_health", headers=AUTH)
    assert form.status_code == 200
    result = await http.post("/ui/tools/gateway_health", headers=AUTH)
    assert result.status_code == 200
    assert "gone-1" in result.text  # the health report names the replica
    metrics = gateway.collect_metrics()
    assert metrics is not None
    figures = metrics.recent.tool("gateway_health")
    assert figures is not None
    assert figures.calls == 1
    unknown = await http.get("/ui/tools/gone_nothing", headers=AUTH)
    assert unknown.status_code == 404


async def test_approving_writes_the_lock(http: httpx.AsyncClient, gateway: Gateway) -> None:
    path = gateway.config.base_dir / gateway.config.gateway.lock_file
    assert not path.exists()
    answer = await http.post("/ui/actions/approve-pins", headers=AUTH)
    assert answer.status_code == 200
    assert "tools pinned" in answer.text
    assert path.exists()


async def test_static_files_are_public(http: httpx.AsyncClient) -> None:
    answer = await http.get("/ui/static/htmx.min.js")
    assert answer.status_code == 200
    assert (await http.get("/ui/static/console.css")).status_code == 200


async def test_a_failed_reload_says_why(http: httpx.AsyncClient, gateway: Gateway) -> None:
    assert gateway.config.source is not None
    gateway.config.source.write_text("[gateway]\nconnect_timeout = -1\n")
    answer = await http.post("/ui/actions/reload", headers=AUTH)
    assert answer.status_code == 400
    assert "connect_timeout" in answer.text
    assert "keeping the running config" in answer.text


async def test_drain_and_readmit_need_the_csrf_token(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    (replica,) = gateway.upstreams
    csrf = await logged_in(http)
    drain = "/ui/actions/replicas/gone-1/drain"
    assert (await http.post(drain)).status_code == 403
    assert not replica.drained
    answer = await http.post(drain, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200
    assert replica.drained
    assert 'data-field="drained"' in (await http.get("/ui/servers/rows")).text
    admit = "/ui/actions/replicas/gone-1/admit"
    assert (await http.post(admit, data={"csrf": "wrong"})).status_code == 403
    assert replica.drained
    assert (await http.post(admit, data={"csrf": csrf})).status_code == 200
    assert not replica.drained
    assert 'data-field="drained"' not in (await http.get("/ui/servers/rows")).text
    unknown = await http.post("/ui/actions/replicas/nowhere-1/drain", headers=AUTH)
    assert unknown.status_code == 404
    assert "no replica named" in unknown.text


async def test_the_servers_show_the_gateway_sign_in_never_a_token(
    tmp_path: Path, data_dir: Path
) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(
        f"""
[gateway]
connect_timeout = 2
token_key = "token-key-0123456789abcdef"
[gateway.admin]
token = "{TOKEN}"

[[servers]]
name = "remote"
url = "http://127.0.0.1:{free_port()}/mcp"
auth = {{ type = "oauth" }}
"""
    )
    gateway = Gateway(load_config(path))
    clock = FakeClock()
    routes = ui_routes(gateway, sign_ins=SignInCache(clock=clock))
    transport = httpx.ASGITransport(app=Starlette(routes=routes))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        rows = (await http.get("/ui/servers/rows", headers=AUTH)).text
        assert "not signed in" in rows
        assert "tokens.json" in rows  # where they rest: the file, with no keyring
        (replica,) = gateway.upstreams
        tokens = OAuthToken(access_token="at-secret-1", refresh_token="rt-secret-2", expires_in=60)
        await storage_for(replica.spec).set_tokens(tokens)
        clock.advance(TTL)  # the console reads a sign-in again every few seconds
        rows = (await http.get("/ui/servers/rows", headers=AUTH)).text
        actions = (await http.get("/ui/actions", headers=AUTH)).text
        # No browser sign-in here (no public URL, not the HTTP front): the command instead.
        assert "Run <code>mcp-agg login remote</code>" in actions
        answer = await http.post("/ui/actions/servers/remote/sign-in", headers=AUTH)
        assert answer.status_code == 409
        assert "run `mcp-agg login remote` on the host" in answer.text
    assert "not signed in" not in rows
    assert re.search(r"signed in</span> until 20[0-9-]+T[0-9:]+\+00:00, refreshable", rows), rows
    assert "at-secret-1" not in rows
    assert "rt-secret-2" not in rows


async def test_a_sign_in_needs_the_csrf_token_and_a_server_with_oauth(gateway: Gateway) -> None:
    store = MemoryStore()
    links = SignInLinks("token-key-0123456789", "http://gateway")
    servers = {s.name: s for s in gateway.config.servers}.get
    flow = WebSignIn(links, UserTokens(store, "token-key-0123456789", "memory"), store, servers)
    transport = httpx.ASGITransport(app=Starlette(routes=ui_routes(gateway, flow)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        csrf = await logged_in(http)
        url = "/ui/actions/servers/gone/sign-in"
        assert (await http.post(url)).status_code == 403
        answer = await http.post(url, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 400
    assert "server &#39;gone&#39; has no auth" in answer.text
    assert "hx-redirect" not in answer.headers


@pytest.mark.parametrize("audited", [True, False])
async def test_the_recent_calls_name_their_client_from_the_audit_log(
    tmp_path: Path, audited: bool
) -> None:
    path = tmp_path / "servers.toml"
    path.write_text(
        f"""
[gateway]
{'audit_log = "audit.jsonl"' if audited else ""}
[gateway.admin]
token = "{TOKEN}"
"""
    )
    line = {
        "time": "2026-12-07T08:00:00.000+00:00",
        "client": "alice-laptop",
        "tool": "units_convert",
        "server": "units",
        "duration_ms": 3.25,
        "outcome": "ok",
    }
    (tmp_path / "audit.jsonl").write_text(json.dumps(line) + "\n")
    gateway = Gateway(load_config(path))
    transport = httpx.ASGITransport(app=Starlette(routes=ui_routes(gateway)))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        panel = (await http.get("/ui/traffic/panel", headers=AUTH)).text
    assert ('<td data-field="client">alice-laptop</td>' in panel) is audited
    assert ('data-field="client-note"' in panel) is not audited
    assert ("<code>audit_log</code> in <code>[gateway]</code>" in panel) is not audited
