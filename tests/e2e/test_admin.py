"""The admin API of a served HTTP gateway, with real processes: refused without its
token; a stdio server registered through it is called through /mcp and shown by
`mcp-agg status --url`, and unregistering it takes it away."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastmcp import Client

from tests.e2e.procs import (
    PYTHON,
    SERVERS,
    demo_servers,
    free_port,
    pids_with_arg,
    served_gateway,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOKEN = "e2e-admin-token-0123456789"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The served gateway's base URL (http://127.0.0.1:PORT)."""
    folder = tmp_path_factory.mktemp("admin")
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
connect_timeout = 30
[gateway.admin]
token = "${{ADMIN_TOKEN}}"
{demo_servers(folder, "units")}"""
    )
    with served_gateway(config, env={"ADMIN_TOKEN": TOKEN}) as (url, _proc):
        yield url.removesuffix("/mcp")


def start_status(*args: str, token: str = TOKEN) -> subprocess.Popen[str]:
    """`mcp-agg status ARGS` with the admin token in $MCP_AGG_ADMIN_TOKEN."""
    return subprocess.Popen(
        [PYTHON, "-m", "mcp_agg", "status", *args],
        env={**os.environ, "MCP_AGG_ADMIN_TOKEN": token, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def status(*args: str) -> tuple[int, str, str]:
    return finished(start_status(*args))


def test_the_admin_api_refuses_requests_without_its_token(gateway: str) -> None:
    assert httpx.get(f"{gateway}/admin/servers").status_code == 401
    wrong = {"Authorization": "Bearer not-the-admin-token"}
    assert httpx.get(f"{gateway}/admin/servers", headers=wrong).status_code == 401
    body = {"name": "sneaky", "command": "python", "args": ["-c", "pass"]}
    assert httpx.post(f"{gateway}/admin/servers", json=body).status_code == 401
    # Both at once: each is a Python start-up.
    refused = start_status("--url", gateway, token="not-the-admin-token")
    unreachable = start_status("--url", f"http://127.0.0.1:{free_port()}")
    code, _, err = finished(refused)
    assert code == 1
    assert "refused the admin token" in err
    code, _, err = finished(unreachable)
    assert code == 1
    assert "cannot reach" in err


async def test_a_server_registered_at_runtime_is_served_shown_and_removed(
    gateway: str, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    notes = str(SERVERS / "notes.py")
    body = {
        "name": "notes",
        "command": "python",
        "args": [notes],
        "env": {"NOTES_DIR": str(tmp_path / "notes")},
    }
    async with (
        httpx.AsyncClient(base_url=gateway, headers=auth, timeout=60) as admin,
        Client(f"{gateway}/mcp", timeout=60) as client,
    ):
        assert "notes_add_note" not in {t.name for t in await client.list_tools()}
        response = await admin.post("/admin/servers", json=body)
        assert response.status_code == 201, response.text
        answer = response.json()
        assert answer["connected"] is True
        assert answer["tools"] == 5

        result = await client.call_tool_mcp("notes_add_note", {"title": "t", "body": "b"})
        assert not result.is_error
        assert (tmp_path / "notes").is_dir()

        code, out, err = status("--url", gateway)
        assert code == 0, err
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        assert rows["notes-1"][1:4] == ["notes", "stdio", "connected"]
        assert "units-1" in rows

        response = await admin.delete("/admin/servers/notes")
        assert response.status_code == 200
        assert response.json() == {"name": "notes", "removed": True}
        assert "notes_add_note" not in {t.name for t in await client.list_tools()}
        wait_until(lambda: not pids_with_arg(notes), 15, "the notes backend to be reaped")

    code, out, err = status("--url", f"{gateway}/mcp", "--json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == ["units-1"]


def test_the_replica_state_of_a_backend_that_exited_has_its_exit_code(gateway: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    exits = "import sys; print('no config', file=sys.stderr); sys.exit(3)"
    body = {"name": "exits", "command": "python", "args": ["-c", exits]}
    with httpx.Client(base_url=gateway, headers=auth, timeout=60) as admin:
        response = admin.post("/admin/servers", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["connected"] is False
        try:
            servers = {s["name"]: s for s in admin.get("/admin/servers").json()["servers"]}
            (replica,) = servers["exits"]["replicas"]
            assert replica["state"] == "error"
            assert replica["health"] != "ok"
            assert replica["exit_code"] == 3
            assert "exit code 3" in replica["last_error"]
        finally:
            assert admin.delete("/admin/servers/exits").status_code == 200
