"""The fleet rows: mcp-agg HTTP replicas behind a real HAProxy with deploy/haproxy.cfg.

Three columns, measured in the same run: one replica called directly (the baseline every
ratio divides by), HAProxy in front of that one replica, and HAProxy in front of two.
The clients speak 2026-07-28, which carries its context in every request, so any replica
serves any call (no sticky sessions). HAProxy is an OS package (`.ci/run` installs it):
without it the rows say so and the rest of the bench runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastmcp import Client

from harness import (
    REQUEST_TIMEOUT,
    BenchError,
    Env,
    Session,
    UncappedHttpTransport,
    open_front,
)

__all__ = ["FLEET_PATHS", "HAPROXY_CFG", "Fleet", "fleet_url", "haproxy_program", "sessions_at"]

HAPROXY_CFG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy.cfg"
#: Replica slots in deploy/haproxy.cfg: the ones not used point at a closed port.
_SLOTS = 3

#: Column key → title in the fleet table.
FLEET_PATHS: dict[str, str] = {
    "replica": "1 replica, direct",
    "haproxy-1": "HAProxy + 1 replica",
    "haproxy-2": "HAProxy + 2 replicas",
}


def haproxy_program() -> str | None:
    """HAProxy's executable (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("haproxy")
    if found is None and Path("/usr/sbin/haproxy").exists():
        found = "/usr/sbin/haproxy"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Fleet:
    """Replicas up and HAProxy routing to them: both URLs of the first replica's path."""

    replica_url: str
    haproxy_url: str


@contextlib.asynccontextmanager
async def fleet_url(haproxy: str, replicas: int, backends: int, env: Env) -> AsyncIterator[Fleet]:
    """`replicas` mcp-agg HTTP fronts (each with `backends` bench backends) and HAProxy in
    front of them, once HAProxy has marked its unused slots down (so no call is first
    sent to a closed port and retried); everything reaped on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        fronts = [
            await stack.enter_async_context(open_front("agg-http", backends, env))
            for _ in range(replicas)
        ]
        ports = [urlsplit(front.url).port for front in fronts]
        closed = [_free_port() for _ in range(_SLOTS - replicas)]
        bind = _free_port()
        log = env.workdir / f"haproxy-{env.next_id()}.log"
        with log.open("w") as out:
            proc = await asyncio.create_subprocess_exec(
                haproxy, "-db", "-f", str(HAPROXY_CFG),
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env={
                    **os.environ,
                    "MCP_AGG_FLEET_BIND": f"127.0.0.1:{bind}",
                    **{
                        f"MCP_AGG_REPLICA_{slot}": f"127.0.0.1:{port}"
                        for slot, port in enumerate([*ports, *closed], 1)
                    },
                },
            )  # fmt: skip
        env.reaper.spawned(proc.pid)
        stack.push_async_callback(_stop, proc, env)
        await _until_routing(proc, log, _SLOTS - replicas)
        yield Fleet(str(fronts[0].url), f"http://127.0.0.1:{bind}/mcp")


async def _until_routing(proc: asyncio.subprocess.Process, log: Path, down: int) -> None:
    """Wait until HAProxy has logged `down` of its servers DOWN (the closed slots)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        said = await asyncio.to_thread(log.read_text)
        if proc.returncode is not None:
            raise BenchError(f"haproxy exited with {proc.returncode}: {said[-500:]}")
        if said.count(" is DOWN") >= down:
            return
        await asyncio.sleep(0.05)
    raise BenchError(f"haproxy did not mark {down} unused slot(s) down within 30 s")


async def _stop(proc: asyncio.subprocess.Process, env: Env) -> None:
    env.reaper.end(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        await asyncio.wait_for(proc.wait(), 5)


@contextlib.asynccontextmanager
async def sessions_at(url: str, count: int) -> AsyncIterator[list[Session]]:
    """`count` client sessions at `url`, their tool names resolved."""
    async with contextlib.AsyncExitStack() as stack:
        found: list[Session] = []
        for _ in range(count):
            client: Client[Any] = Client(
                UncappedHttpTransport(url), timeout=REQUEST_TIMEOUT, init_timeout=REQUEST_TIMEOUT
            )
            session = Session(await stack.enter_async_context(client))
            await session.resolve_names()
            found.append(session)
        yield found
