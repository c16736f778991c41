"""Signing in to a backend behind OAuth (FastMCP's in-memory authorization server):
`mcp-agg login` headless (the test follows the redirect as a browser would), the backend
reported with the command to run until then, its tools through the gateway once signed
in, tokens at rest encrypted, refresh after the access token expires, and `logout`."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import anyio
import httpx
import pytest
from fastmcp import Client

from tests.e2e.procs import (
    BACKENDS,
    backend_process,
    demo_servers,
    eventually,
    free_port,
    mcp_agg,
    served_gateway,
)
from tests.e2e.signin import login, stored
from tests.e2e.test_metrics import metrics_url, sample, scrape

pytestmark = pytest.mark.e2e


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The protected backend; its access tokens live 4 s, or `param` seconds (indirect)."""
    port = free_port()
    seconds = str(getattr(request, "param", 4))
    with backend_process(BACKENDS / "protected.py", "--token-seconds", seconds, port=port):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
def config(tmp_path: Path, backend: str) -> Path:
    path = tmp_path / "servers.toml"
    path.write_text(
        f"""
[gateway]
token_key = "${{MCP_AGG_TOKEN_KEY}}"
{demo_servers(tmp_path, "units")}
[[servers]]
name = "remote"
url = "{backend}"
auth = {{ type = "oauth" }}
"""
    )
    return path


def test_login_then_the_gateway_serves_the_backend(
    config: Path, data_dir: Path, backend: str
) -> None:
    before = mcp_agg("status", "-c", str(config))
    assert "not signed in: run `mcp-agg login remote`" in before.stdout + before.stderr
    tools = mcp_agg("tools", "-c", str(config))
    assert "units_convert" in tools.stdout  # the other backend serves all the same
    assert "remote_token" not in tools.stdout

    said = login(config)
    assert "Signed in to remote until" in said

    path = data_dir / "tokens.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    tokens = anyio.run(stored(data_dir, backend).get_tokens)
    assert tokens is not None
    assert tokens.refresh_token is not None
    assert tokens.access_token not in path.read_text()  # encrypted with token_key
    assert tokens.access_token not in said

    shown = mcp_agg("status", "-c", str(config))
    row = next(line for line in shown.stdout.splitlines() if line.startswith("remote "))
    assert row.split()[1:3] == ["yes", time.strftime("%Y-%m-%d")], shown.stdout
    assert tokens.access_token not in shown.stdout + shown.stderr

    tools = mcp_agg("tools", "-c", str(config))
    assert "remote_token" in tools.stdout, tools.stderr
    assert tokens.access_token not in tools.stdout + tools.stderr

    # The access token lives 4 s: once it has expired, a call refreshes it first.
    deadline = time.monotonic() + 10
    while (expiry := anyio.run(stored(data_dir, backend).expiry)) and expiry.at > time.time():
        assert time.monotonic() < deadline, "the access token never expired"
        time.sleep(0.1)
    called = mcp_agg("call", "remote_token", "-c", str(config))
    assert called.returncode == 0, called.stderr
    renewed = anyio.run(stored(data_dir, backend).get_tokens)
    assert renewed is not None
    assert renewed.access_token != tokens.access_token
    assert called.stdout.strip() == renewed.access_token[-8:]

    assert mcp_agg("logout", "remote", "-c", str(config)).returncode == 0
    assert anyio.run(stored(data_dir, backend).get_tokens) is None
    after = mcp_agg("status", "-c", str(config))
    assert "not signed in: run `mcp-agg login remote`" in after.stdout + after.stderr


def test_a_revoked_sign_in_is_reported_with_the_command(
    config: Path, data_dir: Path, backend: str
) -> None:
    login(config)
    tokens = anyio.run(stored(data_dir, backend).get_tokens)
    assert tokens is not None
    answer = httpx.post(backend.removesuffix("/mcp") + "/test/revoke-all", timeout=10)
    assert answer.status_code == 200, answer.text

    shown = mcp_agg("status", "-c", str(config))
    assert "not signed in: run `mcp-agg login remote`" in shown.stdout, shown.stdout
    assert tokens.access_token not in shown.stdout + shown.stderr
    assert "units-1" in shown.stdout


async def test_a_running_gateway_serves_the_backend_once_signed_in(
    config: Path, data_dir: Path
) -> None:
    with served_gateway(config) as (url, _):
        async with Client(url) as client:
            names = {tool.name for tool in await client.list_tools()}
            assert "units_convert" in names
            assert "remote_token" not in names
            await anyio.to_thread.run_sync(login, config)

            async def listed() -> bool:
                return "remote_token" in {tool.name for tool in await client.list_tools()}

            await eventually(listed, "the backend's tools after the sign-in", timeout=40)


@pytest.mark.parametrize("backend", [3600], indirect=True)  # no refresh before expiry
async def test_a_refused_token_is_refreshed_within_the_session(
    config: Path, data_dir: Path, backend: str
) -> None:
    """A backend refuses a token before its expiry (revoked at the authorization server,
    the refresh token kept): the call is answered, with a new token, on the same session."""
    await anyio.to_thread.run_sync(login, config)
    with served_gateway(config) as (url, _):
        async with Client(url) as client:
            first = await client.call_tool("remote_token", {})
            connects = await replica_connects(url)
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(backend.removesuffix("/mcp") + "/test/revoke-access")
            assert answer.status_code == 200, answer.text

            second = await client.call_tool("remote_token", {})
            renewed = await stored(data_dir, backend).get_tokens()
            assert renewed is not None
            assert second.data == renewed.access_token[-8:] != first.data
            assert await replica_connects(url) == connects  # no reconnect


async def replica_connects(mcp_url: str) -> float:
    """How many sessions the gateway has opened to the protected backend (/metrics)."""
    samples = await scrape(metrics_url(mcp_url))
    return sample(samples, "mcp_agg_replica_connects_total", server="remote", replica="remote-1")


@pytest.mark.parametrize("backend", [3600], indirect=True)
async def test_status_shows_the_sign_in_and_no_token_is_shown_or_logged(
    config: Path, data_dir: Path, backend: str, tmp_path: Path
) -> None:
    """`status --json` says what the sign-in is; no token the authorization server issued
    (at login, and at a refresh after a 401) is in any output, log or the audit log."""
    audit = tmp_path / "audit.jsonl"
    gateway_log = tmp_path / "gateway.log"
    settings = f'[gateway]\naudit_log = "{audit}"\naudit_arguments = true\n'
    text = await anyio.Path(config).read_text()
    await anyio.Path(config).write_text(text.replace("[gateway]\n", settings))
    said = await anyio.to_thread.run_sync(login, config)
    issued = await stored(data_dir, backend).get_tokens()
    assert issued is not None
    with (
        gateway_log.open("wb") as log,
        served_gateway(config, "--log-level", "debug", stderr=log) as (url, _),
    ):
        async with Client(url) as client:
            await client.call_tool("remote_token", {})
            async with httpx.AsyncClient(timeout=10) as http:
                await http.post(backend.removesuffix("/mcp") + "/test/revoke-access")
            await client.call_tool("remote_token", {})  # refreshed after the 401
    renewed = await stored(data_dir, backend).get_tokens()
    assert renewed is not None
    assert renewed.access_token != issued.access_token

    shown = await anyio.to_thread.run_sync(lambda: mcp_agg("status", "-c", str(config)))
    as_json = await anyio.to_thread.run_sync(lambda: mcp_agg("status", "-c", str(config), "--json"))
    row = next(r for r in json.loads(as_json.stdout) if r["id"] == "remote-1")
    sign_in = row["sign_in"]
    assert (sign_in["signed_in"], sign_in["refreshable"]) == (True, True)
    assert datetime.fromisoformat(sign_in["expires_at"]).timestamp() > time.time() + 3000
    assert sign_in["stored_in"] == f"{data_dir / 'tokens.json'} (encrypted with token_key)"
    assert next(r for r in json.loads(as_json.stdout) if r["id"] == "units-1")["sign_in"] is None

    outputs = {
        "login": said,
        "status": shown.stdout + shown.stderr,
        "status --json": as_json.stdout + as_json.stderr,
        "the gateway's log": await anyio.Path(gateway_log).read_text(),
        "the audit log": await anyio.Path(audit).read_text(),
    }
    assert "remote_token" in outputs["the audit log"]  # it did log the calls
    secrets = [issued.access_token, issued.refresh_token, renewed.access_token]
    secrets.append(renewed.refresh_token)
    for where, text in outputs.items():
        for secret in secrets:
            assert secret is not None
            assert secret not in text, f"a token in {where}"
