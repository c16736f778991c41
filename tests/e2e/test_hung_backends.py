"""Backends that hang and will not stop (they ignore SIGTERM and the end of stdin, alone or
as a launch tree like `npx`/`uvx`): the gateway kills them on a deadline, never spins,
keeps answering for its other backends, retries with backoff, and reaps them on shutdown.

The gateway is a real `mcp-agg serve` process: the tests read its CPU time from /proc.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.e2e.procs import (
    BACKENDS,
    alive,
    cpu_seconds,
    eventually,
    exited,
    gone,
    served_gateway,
    wait_until,
)

pytestmark = pytest.mark.e2e

STUBBORN = BACKENDS / "stubborn.py"
CONNECT_TIMEOUT = 2.0
#: The documented stop of a backend process (docs/resilience.md): its stdin is closed
#: (after at most 0.5 s for accepted messages to reach it), SIGTERM to its process group
#: 2 s later, SIGKILL 2 s after that.
KILL_AFTER = 0.5 + 2.0 + 2.0
SIGTERM_TO_SIGKILL = 2.0
#: Room for a loaded machine on top of the deadlines above.
SLACK = 3.0
#: The most of one core the gateway may use while a backend is stuck.
CPU_BUDGET = 0.2


@dataclass(frozen=True)
class Event:
    """A line of the stubborn backend's log."""

    name: str
    pid: int
    pgid: int
    at: float


def events(log: Path) -> list[Event]:
    if not log.exists():
        return []
    lines = (line.split() for line in log.read_text().splitlines())
    return [Event(name, int(pid), int(pgid), float(at)) for name, pid, pgid, at in lines]


def generations(log: Path) -> list[list[Event]]:
    """The events of each process group the gateway started, in the order they spawned."""
    groups: dict[int, list[Event]] = {}
    for event in events(log):
        groups.setdefault(event.pgid, []).append(event)
    return list(groups.values())


def pids(generation: list[Event]) -> set[int]:
    return {event.pid for event in generation if event.name == "spawn"}


def killed(generation: list[Event]) -> bool:
    """Every process of the group is dead (no orphan left running), and the gateway reaped
    its own child, the group's leader (no zombie). A launcher's child is init's to reap."""
    leaders = {e.pid for e in generation if e.name == "spawn" and e.pid == e.pgid}
    return not alive(pids(generation)) and gone(leaders)


def first(generation: list[Event], name: str) -> Event | None:
    return next((event for event in generation if event.name == name), None)


def write_config(folder: Path, log: Path, *hung: str, request_timeout: float = 30) -> Path:
    """A stubborn backend `hung` started with the options `hung`, and a well-behaved one,
    `steady`, that must keep answering meanwhile."""
    config = folder / "servers.toml"
    args = [str(STUBBORN), str(log), *hung]
    config.write_text(
        f"""
[gateway]
connect_timeout = {CONNECT_TIMEOUT}
request_timeout = {request_timeout}
health_interval = 0

[[servers]]
name = "hung"
command = "python"
args = {args!r}

[[servers]]
name = "steady"
command = "python"
args = ["{STUBBORN}", "{folder / "steady.log"}"]
""".replace("'", '"')
    )
    return config


def text(result: mcp_types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, mcp_types.TextContent))


async def cpu_share_while_serving(
    client: Client[Any], gateway: int, window: float, after: float = 0.0
) -> float:
    """The share of one core the gateway uses over `window` seconds (from `after` seconds
    on), during which its other backend's tool is listed and called (and must answer)
    every 0.2 s."""
    began = time.monotonic()
    used: float | None = None
    while (elapsed := time.monotonic() - began) < after + window:
        if used is None and elapsed >= after:
            began_window, used = time.monotonic(), cpu_seconds(gateway)
        names = {tool.name for tool in await client.list_tools()}
        assert "steady_echo" in names, f"tools/list lost the other backend: {names}"
        assert text(await client.call_tool("steady_echo", {})).startswith("echo from")
        await anyio.sleep(0.2)  # the pace of the calls, not a wait for anything
    assert used is not None
    return (cpu_seconds(gateway) - used) / (time.monotonic() - began_window)


async def within(seconds: float, of: Event, check: Callable[[], Any], what: str) -> Any:
    """`eventually`, by `seconds` after the backend logged `of` (the backends log by the
    same monotonic clock)."""
    left = max(of.at + seconds - time.monotonic(), 0.1)
    return await eventually(check, f"{what} (by {seconds:g}s after its {of.name})", left)


def shut_down(gateway: subprocess.Popen[bytes], hung: list[Event]) -> float:
    """SIGTERM the gateway, which must kill the `hung` backend and exit within the stop
    deadline; the share of one core it used until the backend was killed (its own exit,
    the interpreter's teardown, is a cost of its own)."""
    began, used = time.monotonic(), cpu_seconds(gateway.pid)
    gateway.send_signal(signal.SIGTERM)
    wait_until(lambda: killed(hung), KILL_AFTER + SLACK, "the hung backend to be killed")
    share = (cpu_seconds(gateway.pid) - used) / (time.monotonic() - began)
    wait_until(lambda: exited(gateway.pid), KILL_AFTER + SLACK, "the gateway to exit")
    return share


@pytest.mark.parametrize("options", [[], ["--child"]], ids=["process", "launch-tree"])
async def test_backend_hung_in_initialize_is_killed_retried_and_reaped_without_spinning(
    tmp_path: Path, options: list[str]
) -> None:
    log, errors = tmp_path / "hung.log", tmp_path / "gateway.err"
    config = write_config(tmp_path, log, "--silent", "--stubborn", *options)
    with errors.open("wb") as stderr, served_gateway(config, stderr=stderr) as (url, gateway):
        async with Client(StreamableHttpTransport(url), timeout=10) as client:
            # The handshake timed out and the process was asked to stop; it refuses.
            begun = (await eventually(lambda: generations(log), "the hung backend"))[0]
            await within(
                CONNECT_TIMEOUT + KILL_AFTER + SLACK,
                begun[0],
                lambda: first(generations(log)[0], "sigterm"),
                "the hung backend to get SIGTERM",
            )
            # From a second on, when its stop is well under way, for as long again as
            # it may take to kill it.
            share = await cpu_share_while_serving(client, gateway.pid, window=4.0, after=1.0)
            assert share < CPU_BUDGET, f"the gateway used {share:.0%} of a core"

            # SIGKILLed on the deadline: the whole group, nothing left as a zombie or orphan.
            hung = generations(log)[0]
            assert len(pids(hung)) == 1 + len(options)
            await within(
                CONNECT_TIMEOUT + KILL_AFTER + SLACK,
                hung[0],
                lambda: killed(hung),
                f"the hung backend's processes {pids(hung)} to be killed and reaped",
            )

            # Retried, with backoff, once the first one was gone.
            second = await eventually(
                lambda: generations(log)[1:], "the backend to be started again", timeout=15
            )
            sigterm = first(hung, "sigterm")
            assert sigterm is not None
            assert second[0][0].at > sigterm.at + SIGTERM_TO_SIGKILL
        gateway.send_signal(signal.SIGTERM)
        wait_until(lambda: exited(gateway.pid), KILL_AFTER + SLACK, "the gateway to exit")
        assert gateway.wait(timeout=5) == 0
        assert all(killed(g) for g in generations(log)), f"left behind: {generations(log)}"
    assert "hung-1: did not connect within connect_timeout" in errors.read_text()
    assert "retrying in" in errors.read_text()


async def test_backend_hung_on_a_call_is_reaped_on_shutdown_without_spinning(
    tmp_path: Path,
) -> None:
    log = tmp_path / "hung.log"
    config = write_config(tmp_path, log, "--stubborn", "--child", request_timeout=1)
    with served_gateway(config) as (url, gateway):
        async with Client(StreamableHttpTransport(url), timeout=10) as client:
            stalled = await client.call_tool("hung_stall", {}, raise_on_error=False)
            assert stalled.is_error
            assert text(await client.call_tool("hung_echo", {})).startswith("echo from")
            share = await cpu_share_while_serving(client, gateway.pid, window=1.0)
            assert share < CPU_BUDGET, f"the gateway used {share:.0%} of a core"
        hung = generations(log)[0]
        assert len(pids(hung)) == 2
        share = shut_down(gateway, hung)
        assert share < CPU_BUDGET, f"the gateway used {share:.0%} of a core to stop"
        assert gateway.wait(timeout=5) == 0
        assert [e.name for e in generations(log)[0]].count("sigterm") == 2
