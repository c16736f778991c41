"""Stopping a stdio backend that will not stop (it ignores SIGTERM and the end of stdin):
SIGKILL on its deadline, whatever cancels the session's side meanwhile.

FastMCP cancels its session task natively (`Task.cancel()`) when a connect or a close
overruns, again and again until the task ends: no anyio shield holds that off. The tests
do the same to a real process behind the transport, with the graces cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mcp_agg.backend.transports import stdio
from mcp_agg.backend.transports.stdio import StdioRelayTransport
from tests.e2e.procs import BACKENDS, alive, eventually, gone

GRACE = 0.3


@pytest.fixture(autouse=True)
def short_graces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "EXIT_GRACE", GRACE)
    monkeypatch.setattr(stdio, "TERMINATE_GRACE", GRACE)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    """The stubborn backend's log; any process it names is killed after the test."""
    path = tmp_path / "stubborn.log"
    yield path
    for pid in spawned(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def logged(log: Path, event: str) -> set[int]:
    """The processes that logged `event`."""
    if not log.exists():
        return set()
    return {int(line.split()[1]) for line in log.read_text().splitlines() if event in line}


def spawned(log: Path) -> set[int]:
    return logged(log, "spawn")


def leader(log: Path) -> int:
    """The process the transport started (the leader of its process group)."""
    lines = [line.split() for line in log.read_text().splitlines()]
    (pid,) = (int(pid) for event, pid, pgid, _ in lines if event == "spawn" and pid == pgid)
    return pid


def stubborn(log: Path, *options: str) -> StdioRelayTransport:
    args = [str(BACKENDS / "stubborn.py"), str(log), "--silent", "--stubborn", *options]
    return StdioRelayTransport(sys.executable, args, {}, str(log.parent), sys.stderr)


async def open_session(transport: StdioRelayTransport) -> asyncio.Task[None]:
    """A task holding a session on `transport`, as FastMCP's session runner does."""
    opened = anyio.Event()

    async def hold() -> None:
        async with transport.connect_session():
            opened.set()
            await anyio.sleep_forever()

    task = asyncio.create_task(hold())
    await opened.wait()
    return task


@pytest.mark.parametrize("options", [[], ["--child"]], ids=["process", "launch-tree"])
async def test_a_cancelled_session_task_ends_at_once_and_the_stop_goes_on(
    log: Path, options: list[str]
) -> None:
    transport = stubborn(log, *options)
    session = await open_session(transport)
    pids = await eventually(
        lambda: len(spawned(log)) == 1 + len(options) and spawned(log), "the backend to start"
    )
    session.cancel()  # the session ends: the process is asked to stop, and refuses
    await eventually(lambda: logged(log, "eof"), "the backend to see its stdin closed")
    with anyio.fail_after(1):  # FastMCP gives up waiting and cancels again: no spinning
        while not session.done():
            session.cancel()
            await asyncio.sleep(0)
    with anyio.fail_after(2 * GRACE + 3):
        await transport.close()
    assert not alive(pids), f"left behind: {alive(pids)}"
    assert gone({leader(log)}), "not reaped"
    assert logged(log, "sigterm") == pids
