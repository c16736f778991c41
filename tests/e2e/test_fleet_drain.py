"""Readiness and draining, with a real HAProxy (deploy/haproxy.cfg) in front of real
replicas under load.

The replicas front `backends/faulty.py`, whose `read` takes 80 ms (so calls overlap) and
answers with the tag of the replica that runs it. A stream of stateless 2026-07-28 calls
(`fleet.Load`) goes through HAProxy while one replica is stopped: with SIGTERM it drains
(its `/readyz` turns 503, HAProxy takes it out of rotation within `inter * fall`, 1 s,
while it still serves for `drain_seconds`, 2 s; a long call in flight there keeps it up
after that, refusing) and no call fails; restarted on its port, HAProxy readmits it and it
serves again. With SIGKILL only the calls in flight on it fail.
A replica listens at once while it starts: `/healthz` 200, `/readyz` 503 (and MCP's
handshake answered, `test_startup.py`).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import anyio
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.fleet import Fleet, Load, fleet
from tests.e2e.procs import (
    BACKENDS,
    PYTHON,
    SERVERS,
    eventually,
    free_port,
    kill_group,
    probe,
)

pytestmark = pytest.mark.e2e

SERVE_HTTP = ("--transport", "http", "--port")
#: Shared by the replicas: any of them serves a handshake-era session.
SECRET = "e2e-fleet-drain-session-secret-0123456789"
#: The load's clients: stateless 2026-07-28 calls, or 8 handshake-era sessions.
ERAS = pytest.mark.parametrize("sessions", [0, 8], ids=["stateless", "handshake sessions"])
#: How long the backend's `read` takes while the mode file says so.
SLOW = "slow:80"


def faulty_config(folder: Path) -> Path:
    """A gateway with `drain_seconds = 2` in front of one faulty backend, tagged with the
    replica that runs it (its mode file says `slow:80`), and `answers`, whose `ask` takes
    3 s (a long call, logged to `answers.log`)."""
    (folder / "mode").write_text(SLOW)
    config = folder / "servers.toml"
    config.write_text(
        f"""
[gateway]
drain_seconds = 2
shutdown_grace = 10
session_secret = "{SECRET}"

[[servers]]
name = "faulty"
command = "python"
args = ["{BACKENDS / "faulty.py"}", "--replica", "${{MCP_AGG_FLEET_REPLICA}}",
        "--count-file", "{folder / "counts"}", "--mode-file", "{folder / "mode"}"]

[[servers]]
name = "answers"
command = "python"
args = ["{BACKENDS / "answers.py"}", "--delay", "3", "--log-file", "{folder / "answers.log"}"]
"""
    )
    return config


def started_by_replica(folder: Path) -> Counter[str]:
    """Calls of `read` each replica's backend has begun (the count file)."""
    lines = (folder / "counts").read_text().splitlines()
    return Counter(line.split()[0] for line in lines if line.split()[1] == "read")


def began(folder: Path) -> bool:
    """`answers` has begun a call."""
    log = folder / "answers.log"
    return log.exists() and " start" in log.read_text()


def load_through(f: Fleet, spread: float, sessions: int) -> Load:
    return Load(
        f.url,
        "faulty_read",
        {"key": "k"},
        calls=300,
        concurrency=8,
        spread=spread,
        sessions=sessions,
    )


async def exited(proc: subprocess.Popen[bytes], within: float) -> int:
    with anyio.fail_after(within):
        while proc.poll() is None:
            await anyio.sleep(0.05)
    return proc.returncode


@ERAS
async def test_sigterm_under_load_loses_no_call_and_the_restarted_replica_serves(
    tmp_path: Path, sessions: int
) -> None:
    """A long call in flight on the stopped replica keeps it alive past the moment it
    starts refusing: only `drain_seconds` above HAProxy's `inter * fall` keeps every
    call of the load away from it by then (with 0, some are refused)."""
    with fleet(faulty_config(tmp_path)) as f:
        load = load_through(f, spread=14.0, sessions=sessions)
        long_call: list[str] = []

        async def ask_replica_0() -> None:
            async with Client(StreamableHttpTransport(f.replica_url(0)), timeout=30) as client:
                # Listed first: the client checks a result against the tool's output schema,
                # and would list the tools after the call, once the replica refuses.
                await client.list_tools()
                result = await client.call_tool_mcp("answers_ask", {"question": "long?"})
            long_call.append("error" if result.is_error else "answered")

        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run)
            await eventually(lambda: load.done >= 30, "the first calls", timeout=30)
            tg.start_soon(ask_replica_0)
            await eventually(lambda: began(tmp_path), "the long call begun", timeout=10)
            f.procs[0].send_signal(signal.SIGTERM)
            await eventually(lambda: probe(f.ports[0]) == 503, "/readyz 503 after SIGTERM", 1)
            assert probe(f.ports[0], "/healthz") == 200
            assert await exited(f.procs[0], within=20) == 0
            assert load.done < load.calls, "the load ended before the replica had stopped"
            await anyio.to_thread.run_sync(f.restart, 0, "0-again")
            await eventually(
                lambda: load.answers["0-again"] > 0, "a call served by the restarted replica", 30
            )
            assert load.done < load.calls, "the load ended before HAProxy readmitted it"
        assert dict(load.failures) == {}
        assert load.answers.total() == 300
        assert long_call == ["answered"]
        assert load.answers["0"] > 0, load.answers


@ERAS
async def test_sigkill_fails_only_the_calls_in_flight_on_that_replica(
    tmp_path: Path, sessions: int
) -> None:
    """With handshake-era sessions, those that had requests on the killed replica go on
    on the others: every call after the kill is answered."""
    with fleet(faulty_config(tmp_path)) as f:
        load = load_through(f, spread=5.0, sessions=sessions)
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.run)
            await eventually(lambda: load.done >= 30, "the first calls", timeout=30)
            # Every call now waits in a backend: 8 in flight, and each replica's share is
            # known exactly (begun there, not answered) when the victim is killed.
            (tmp_path / "mode").write_text("hold")
            await eventually(
                HeldStill(tmp_path, load), "eight calls held in the backends", timeout=20
            )
            started = started_by_replica(tmp_path)
            held = {tag: started[tag] - load.answers[tag] for tag in ("0", "1", "2")}
            victim = max(held, key=lambda tag: held[tag])
            kill_group(f.procs[int(victim)])
            (tmp_path / "mode").write_text(SLOW)
        failed = load.failures.total()
        assert 0 < held[victim] <= 8
        assert failed <= held[victim], (held, dict(load.failures))
        assert load.answers.total() == 300 - failed
        assert load.answers[victim] == started[victim] - held[victim], "answered after death"


class HeldStill:
    """Whether every call in flight has begun in a backend and is held there: 8 of them,
    and nothing begun or answered for longer than a call that read the mode just before
    "hold" was written takes to answer (`SLOW`). Without that wait, such a call could be
    taken for a held one and answer before the kill, as if after it."""

    def __init__(self, folder: Path, load: Load) -> None:
        self.folder = folder
        self.load = load
        self.seen: tuple[int, int] | None = None
        self.since = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        state = (self.load.done, started_by_replica(self.folder).total())
        if state != self.seen:
            self.seen, self.since = state, now
            return False
        quiet = now - self.since > 3 * int(SLOW.split(":")[1]) / 1000
        return quiet and self.load.in_flight == 8 and state[1] == state[0] + 8


def fetch(url: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    """GET `url` (POST `body` as JSON, if given): the status and the JSON answer."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


async def test_readyz_503_while_starting_and_from_sigterm_on(tmp_path: Path) -> None:
    """A replica whose backend takes 3 s to start listens at once and says it is not
    ready; from SIGTERM on it says so again while it is still alive; probes leave no
    access log lines, other requests do."""
    config = tmp_path / "servers.toml"
    config.write_text(
        f"""
[gateway]
drain_seconds = 2

[[servers]]
name = "late"
command = "sh"
args = ["-c", "sleep 3; exec {PYTHON} {SERVERS / "units.py"}"]
"""
    )
    port = free_port()
    stderr = tmp_path / "gateway.stderr"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [*(PYTHON, "-m", "mcp_agg", "serve", "-c", str(config)), *SERVE_HTTP, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        await eventually(lambda: probe(port, "/healthz") == 200, "the front listening", 30)
        assert probe(port) == 503
        status, body = fetch(f"http://127.0.0.1:{port}/readyz")
        assert (status, body) == (503, {"status": "starting"})
        status, body = fetch(f"http://127.0.0.1:{port}/admin/servers", b"{}")
        assert status == 503
        assert body["error"] == {
            "code": -32000,
            "message": "mcp-agg is starting: not ready for requests yet",
        }
        await eventually(lambda: probe(port) == 200, "/readyz 200 once started", 30)
        proc.send_signal(signal.SIGTERM)
        await eventually(lambda: probe(port) == 503, "/readyz 503 after SIGTERM", 1)
        assert probe(port, "/healthz") == 200
        assert await exited(proc, within=20) == 0
        log = stderr.read_text()
        assert '"POST /admin/servers HTTP/1.1" 503' in log
        assert "/readyz" not in log
        assert "/healthz" not in log
    finally:
        kill_group(proc)
