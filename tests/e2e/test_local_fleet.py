"""deploy/local-fleet run as a person runs it: its URL serves MCP through HAProxy and
three replicas, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from fastmcp import Client

from tests.e2e.procs import (
    PYTHON,
    REPO,
    SERVERS,
    alive,
    demo_servers,
    descendants,
    free_port,
    gone,
    kill_group,
    wait_until,
)

pytestmark = pytest.mark.e2e

LOCAL_FLEET = REPO / "deploy" / "local-fleet"

#: A stdio backend, and one the gateway launches on `${CLOCK_PORT}`, which local-fleet
#: sets to a port of each replica's own (three cannot share one).
CONFIG = f"""
[gateway]
connect_timeout = 60
shutdown_grace = 5
{demo_servers(Path("/unused"), "units")}
[[servers]]
name = "clock"
command = "python"
args = ["{SERVERS / "clock.py"}", "--transport", "http", "--port", "${{CLOCK_PORT}}"]
url = "http://127.0.0.1:${{CLOCK_PORT}}/mcp"
"""


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture
def local_fleet(tmp_path: Path) -> Iterator[Running]:
    """`deploy/local-fleet` on a config of its own, once it has printed its URL."""
    config = tmp_path / "servers.toml"
    config.write_text(CONFIG)
    log = tmp_path / "local-fleet.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [PYTHON, str(LOCAL_FLEET), "--config", str(config), "--port", str(free_port())],
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    lines: list[bytes] = []
    started: set[int] = set()
    assert proc.stdout is not None
    threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True).start()
    try:
        wait_until(lambda: bool(lines) or proc.poll() is not None, 120, "local-fleet's URL")
        assert lines, f"local-fleet exited with {proc.returncode}: {log.read_text()[-2000:]}"
        started = descendants(proc.pid)
        yield Running(proc, lines[0].decode().strip(), log)
    finally:
        # Its processes run in sessions of their own: it stops them, on SIGINT.
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
        kill_group(proc)
        for pid in alive(started):  # what a failing runner left behind
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def calls_through(url: str) -> None:
    """Stateless (modern-era) requests: HAProxy sends each to the next replica."""
    async with Client(url, timeout=30) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"units_add", "clock_echo"} <= names
        for i in range(6):
            assert (await client.call_tool("units_add", {"a": i, "b": 1})).data == i + 1
            assert (await client.call_tool("clock_echo", {"text": f"{i}"})).data == f"{i}"


def test_the_fleet_serves_mcp_and_ctrl_c_stops_every_process(
    local_fleet: Running, tmp_path: Path
) -> None:
    config = tmp_path / "servers.toml"
    assert len(list(tmp_path.glob(".servers.fleet-*.toml"))) == 1, "next to the user's file"
    assert "session_secret" not in config.read_text(), "the user's file is not edited"
    anyio.run(calls_through, local_fleet.url)

    started = descendants(local_fleet.proc.pid)
    # redis-server, haproxy, 3 replicas, and each replica's units and clock.
    assert len(started) >= 1 + 1 + 3 + 3 * 2, started
    local_fleet.proc.send_signal(signal.SIGINT)
    assert local_fleet.proc.wait(timeout=60) == 0, local_fleet.log.read_text()[-2000:]
    wait_until(lambda: gone(started), 15, "every process local-fleet started to end")
    assert not list(tmp_path.glob(".servers.fleet-*.toml")), "the overlay is removed"
    assert "[replica3]" in local_fleet.log.read_text(), "each process's output is prefixed"


def test_a_bad_config_is_refused_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "servers.toml"
    config.write_text("[gateway]\nrequest_timeout = -1\n")
    done = subprocess.run(
        [PYTHON, str(LOCAL_FLEET), "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "gateway.request_timeout" in done.stderr, done.stderr
    assert not list(tmp_path.glob(".servers.fleet-*.toml"))
