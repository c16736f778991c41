"""`[profiles.NAME]` chosen with `--profile` or `$MCP_AGG_PROFILE` switches a backend's URL.

The base config points the server at a port nothing listens on; only the profile's
URL reaches the live clock backend, so tools that appear prove which URL was used.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from fastmcp import Client

from tests.e2e.conftest import Backends
from tests.e2e.procs import PYTHON, free_port, served_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, backends: Backends) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "servers.toml"
    path.write_text(
        f"""
[gateway]
connect_timeout = 5

[[servers]]
name = "web"
url = "http://127.0.0.1:{free_port()}/mcp"

[profiles.live.servers.web]
url = "{backends.http_url}"

[profiles.live.gateway]
separator = "__"
"""
    )
    return path


def tools(config: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    done = subprocess.run(
        [PYTHON, "-m", "mcp_agg", "tools", "-c", str(config), "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    names = [row["name"] for row in json.loads(done.stdout)] if done.stdout else []
    return done.returncode, names


def test_without_the_profile_the_base_url_is_used(config: Path) -> None:
    code, names = tools(config)
    assert code == 1  # the only backend is down
    assert names == []


def test_profile_option_switches_the_url_and_gateway_keys(config: Path) -> None:
    code, names = tools(config, "--profile", "live")
    assert code == 0
    assert "web__echo" in names  # the live backend, under the profile's separator


def test_profile_from_the_environment(config: Path) -> None:
    code, names = tools(config, env={"MCP_AGG_PROFILE": "live"})
    assert (code, "web__echo" in names) == (0, True)


def test_unknown_profile_is_a_config_error(config: Path) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "mcp_agg", "check", "-c", str(config), "--profile", "prod"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "profile 'prod' is not defined (live)" in done.stderr


async def test_served_gateway_with_a_profile_calls_the_profile_backend(config: Path) -> None:
    with served_gateway(config, "--profile", "live") as (url, _):
        async with Client(url, mode="legacy", timeout=30) as client:
            result = await client.call_tool("web__echo", {"text": "from staging"})
    assert result.content[0].text == "from staging"  # type: ignore[union-attr]
