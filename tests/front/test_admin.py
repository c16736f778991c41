"""Tests for the admin HTTP API's routes (`mcp_agg.front.admin`), served in process.

The gateway runs with backends that cannot be reached, so registering one starts no
process: it fails to connect, which the answer says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from mcp_agg.config import load_config
from mcp_agg.core.gateway import Gateway
from mcp_agg.front.admin import admin_routes
from tests.e2e.procs import free_port

TOKEN = "admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture
def gateway(tmp_path: Path, port: int) -> Gateway:
    path = tmp_path / "servers.toml"
    path.write_text(
        f"""
[gateway]
connect_timeout = 2
[gateway.admin]
token = "{TOKEN}"

[[servers]]
name = "filed"
url = "http://127.0.0.1:{port}/mcp"
headers = {{ Authorization = "Bearer backend-secret-123" }}
"""
    )
    return Gateway(load_config(path))


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=admin_routes(gateway))
    transport = httpx.ASGITransport(app=app)
    async with (
        gateway.running(),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
    ):
        yield client


def test_no_routes_without_admin_config(tmp_path: Path) -> None:
    path = tmp_path / "servers.toml"
    path.write_text("")
    assert admin_routes(Gateway(load_config(path))) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer admin-token-0123456788"},
        {"Authorization": TOKEN},
    ],
)
async def test_without_the_token_every_endpoint_is_401(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, url in [
        ("GET", "/admin/servers"),
        ("POST", "/admin/servers"),
        ("DELETE", "/admin/servers/filed"),
        ("POST", "/admin/replicas/filed-1/drain"),
        ("POST", "/admin/replicas/filed-1/admit"),
    ]:
        response = await http.request(method, url, headers=headers, json={"name": "x"})
        assert response.status_code == 401, (method, url)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "error" in response.json()


async def test_servers_lists_every_server_with_its_replicas(http: httpx.AsyncClient) -> None:
    response = await http.get("/admin/servers", headers=AUTH)
    assert response.status_code == 200
    (server,) = response.json()["servers"]
    assert server["name"] == "filed"
    assert server["source"] == "config"
    assert server["tools"] == 0
    (replica,) = server["replicas"]
    assert replica["id"] == "filed-1"
    assert replica["transport"] == "http"
    assert "backend-secret-123" not in response.text


async def test_drain_and_readmit_a_replica(http: httpx.AsyncClient, gateway: Gateway) -> None:
    (replica,) = gateway.upstreams

    async def drained() -> bool:
        listed = (await http.get("/admin/servers", headers=AUTH)).json()
        return bool(listed["servers"][0]["replicas"][0]["drained"])

    answer = await http.post("/admin/replicas/filed-1/drain", headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"id": "filed-1", "drained": True, "in_flight": 0}
    assert replica.drained
    assert await drained()
    answer = await http.post("/admin/replicas/filed-1/admit", headers=AUTH)
    assert answer.json()["drained"] is False
    assert not replica.drained
    assert not await drained()


async def test_draining_an_unknown_replica_is_404(http: httpx.AsyncClient) -> None:
    answer = await http.post("/admin/replicas/nowhere-1/drain", headers=AUTH)
    assert answer.status_code == 404
    assert answer.json() == {"error": "no replica named 'nowhere-1'"}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"name": "bad", "url": "ftp://example.com"}, "url: must start with http:// or https://"),
        ({"name": "bad", "command": "x", "argz": []}, "argz: unknown key"),
        ({"command": "x"}, "name: required key is missing"),
        ({"name": "bad"}, "needs `command` (stdio) or `url` (HTTP/SSE)"),
        ({"name": "bad", "command": "x", "replicas": 0}, "replicas: "),
        (
            {"name": "bad", "url": "http://127.0.0.1:9/mcp", "failover_for": "nowhere"},
            "failover_for = 'nowhere' names no server",
        ),
    ],
)
async def test_a_bad_body_is_400_naming_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], problem: str
) -> None:
    response = await http.post("/admin/servers", headers=AUTH, json=body)
    assert response.status_code == 400
    assert problem in response.json()["error"]


async def test_a_body_that_is_not_an_object_is_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/admin/servers", headers=AUTH, content=b"not json")
    assert response.status_code == 400
    response = await http.post("/admin/servers", headers=AUTH, json=["name"])
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]


async def test_register_list_and_unregister(
    http: httpx.AsyncClient, gateway: Gateway, port: int
) -> None:
    body = {"name": "late", "url": f"http://127.0.0.1:{port}/mcp"}
    response = await http.post("/admin/servers", headers=AUTH, json=body)
    assert response.status_code == 201
    answer = response.json()
    assert answer["name"] == "late"
    assert answer["connected"] is False  # nothing listens on that port
    assert answer["tools"] == 0
    assert [r["id"] for r in answer["replicas"]] == ["late-1"]
    assert answer["replicas"][0]["last_error"]
    assert "late" in gateway.groups

    listed = (await http.get("/admin/servers", headers=AUTH)).json()["servers"]
    assert [(s["name"], s["source"]) for s in listed] == [("filed", "config"), ("late", "admin")]

    duplicate = await http.post("/admin/servers", headers=AUTH, json=body)
    assert duplicate.status_code == 409
    assert "already configured" in duplicate.json()["error"]
    taken = await http.post("/admin/servers", headers=AUTH, json={**body, "name": "filed"})
    assert taken.status_code == 409

    response = await http.delete("/admin/servers/late", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"name": "late", "removed": True}
    assert "late" not in gateway.groups
    assert (await http.delete("/admin/servers/late", headers=AUTH)).status_code == 404


async def test_a_server_of_the_config_file_cannot_be_unregistered(
    http: httpx.AsyncClient, gateway: Gateway
) -> None:
    response = await http.delete("/admin/servers/filed", headers=AUTH)
    assert response.status_code == 409
    assert "config file" in response.json()["error"]
    assert "filed" in gateway.groups
